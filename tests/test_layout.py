"""brainiron.layout: one specification (data/io_spec.json) for every derivative name, and
nothing else spells one."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from brainiron import layout
from brainiron.io import parse_name

ROOT = Path(__file__).resolve().parents[1]
SPEC = json.loads((ROOT / "src/brainiron/data/io_spec.json").read_text())


@pytest.mark.parametrize("name", sorted(SPEC["subject"]))
def test_subject_names_are_bids_names_with_the_spec_entities(name):
    entry = SPEC["subject"][name]
    path = layout.subject_path("deriv", name, "sub-07_ses-b")
    assert path.parent == Path("deriv/sub-07/ses-b/anat")
    entities, suffix, ext = parse_name(path)
    fill = {"template": "MNI152NLin2009cAsym", "atlas": "CIT168"}
    want = {"sub": "07", "ses": "b", **{k: v.format(**fill)
                                        for k, v in entry["entities"].items()}}
    assert entities == want and list(entities) == list(want)
    assert (suffix, ext) == (entry["suffix"], entry["extension"])


def test_pattern_and_path_agree():
    for name in SPEC["subject"]:
        pattern = layout.subject_pattern("d", name)
        assert pattern.format(folder="sub-01", key="sub-01") == \
            str(layout.subject_path("d", name, "sub-01"))


def test_unknown_names_say_what_is_known():
    with pytest.raises(KeyError, match="no subject output 'dsegg'.*dseg"):
        layout.subject_path("d", "dsegg", "sub-01")
    with pytest.raises(KeyError, match="no group output"):
        layout.group_path("d", "nothing")


def _derivative_names() -> set[str]:
    """Every derivative file name's distinctive tail: ``desc-registration_qc.json``, ...,
    ``regions.tsv`` (bare suffixes such as ``R2starmap.nii.gz`` are raw BIDS names too)."""
    fill = {"template": "MNI152NLin2009cAsym", "atlas": "CIT168"}
    names = set()
    for entry in SPEC["subject"].values():
        if entry["entities"]:
            names.add("_".join([*(f"{k}-{v}".format(**fill) for k, v in entry["entities"].items()),
                                entry["suffix"]]) + entry["extension"])
    names |= {Path(p).name for p in SPEC["group"].values() if "." in Path(p).name}
    return names


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring (f-string parts too)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_derivative_name_is_spelled_outside_the_layout():
    """Rules, steps, the report and the CLI take every derivative file name from the layout:
    no string literal elsewhere ends with one (prose that mentions a name is fine)."""
    names = _derivative_names()

    def names_a_file(text: str) -> bool:
        return any(text == n or text.endswith(("_" + n, "/" + n)) for n in names)

    # The package's own region table (data/regions.tsv) shares a name with the group table.
    allowed = {("src/brainiron/atlas.py", "regions.tsv")}
    offenders = []
    for path in sorted((ROOT / "src/brainiron").rglob("*.py")):
        if path.name == "layout.py" or "phantom" in path.parts or path.name == "phantom.py":
            continue  # the phantom writes its own (raw and truth) datasets
        offenders += [f"{path.relative_to(ROOT)}:{line}: {text!r}"
                      for line, text in _string_constants(path) if names_a_file(text)
                      and (str(path.relative_to(ROOT)), text) not in allowed]
    quoted = re.compile(r"""(["'])([^"']*)\1""")
    workflow = ROOT / "src/brainiron/workflow"
    for path in [*sorted(workflow.rglob("*.smk")), workflow / "Snakefile", ROOT / "Snakefile"]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            offenders += [f"{path.relative_to(ROOT)}:{number}: {m.group(2)!r}"
                          for m in quoted.finditer(code) if names_a_file(m.group(2))]
    assert not offenders, "\n".join(offenders)
