"""The outputs are BIDS (issue 16): the official validator (``bids-validator-deno``, the
test extra) reports no error on the raw phantom, its ground truth
(``derivatives/phantom-truth``) and brainiron's derivatives for every phantom variant
(T1w, no T1w, MEGRE only, χ only, sessions; refinement on), and only the warnings no
phantom can avoid; pybids (``BIDSLayout``) reads every data file with the entities and
suffix of ``io_spec.json``, and logs, benchmarks and figures never look like data files.

One workflow run per variant (a module-scoped fixture; 1 subject at 4 mm, about 40-70 s
each). The validator needs no network: its schema is built in (docs/bids.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brainiron import layout
from brainiron.io import read_tsv
from brainiron.phantom import generate_phantom, truth_dir

pytestmark = pytest.mark.slow

SPEC = json.loads((Path(__file__).resolve().parents[1] / "src/brainiron/data/io_spec.json")
                  .read_text())
#: variant → (phantom overrides, workflow configuration overrides, sessions). Three runs
#: cover the five variants of the issue: "sessions" is a T1w session (ses-1) and a session
#: without T1w (ses-2, registered on the MEGRE magnitude), with refinement on.
VARIANTS = {
    "sessions": ({"seed": 41}, {"refinement.enabled": "true"}, True),
    "megre-only": ({"seed": 43, "with_t1w": False, "with_chimap": False,
                    "with_r2starmap": False}, {}, False),
    "chi-only": ({"seed": 44, "with_t1w": False, "with_megre": False,
                  "with_r2starmap": False}, {}, False),
}
#: Warnings the phantom cannot avoid: scanner facts a synthetic dataset does not have
#: (SIDECAR_KEY_RECOMMENDED: Manufacturer, ..., EchoTime / FlipAngle of computed maps), HED
#: (no events), and one author (TOO_FEW_AUTHORS is a hint).
RAW_WARNINGS = {"SIDECAR_KEY_RECOMMENDED", "JSON_KEY_RECOMMENDED", "TOO_FEW_AUTHORS"}
DERIVATIVE_WARNINGS = {"TOO_FEW_AUTHORS"}


def _to_sessions(bids: Path) -> None:
    """Move every subject's anat/ to ses-1/ and copy it to ses-2/ without the T1w (raw and
    truth), names and the truth sidecars' BIDS URIs included."""
    for top in (bids, truth_dir(bids)):
        for sub in sorted(top.glob("sub-*")):
            s = sub.name
            for ses in ("ses-1", "ses-2"):
                shutil.copytree(sub / "anat", sub / ses / "anat")
                for path in sorted((sub / ses / "anat").iterdir()):
                    if ses == "ses-2" and "_T1w." in path.name:
                        path.unlink()
                        continue
                    target = path.with_name(path.name.replace(f"{s}_", f"{s}_{ses}_", 1))
                    path.rename(target)
                    if target.suffix == ".json":
                        target.write_text(target.read_text().replace(
                            f"{s}/anat/{s}_", f"{s}/{ses}/anat/{s}_{ses}_"))
            shutil.rmtree(sub / "anat")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def run(request, tmp_path_factory):
    """(variant, raw dataset, brainiron's derivatives) after one `brainiron run`."""
    phantom, config, sessions = VARIANTS[request.param]
    work = tmp_path_factory.mktemp(request.param)
    bids = work / "bids"
    generate_phantom(bids, n_subjects=1, voxel_size=(4.0, 4.0, 4.0), **phantom)
    if sessions:
        _to_sessions(bids)
    out = work / "out"
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    cmd = [sys.executable, "-m", "brainiron.cli", "run", str(bids), str(out), "--cores", "2"]
    if config:
        cmd += ["--config", *(f"{k}={v}" for k, v in config.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return request.param, bids, layout.run_path(out, "derivatives")


def validate(dataset: Path) -> tuple[list[dict], int]:
    """The validator's issues (``severity``, ``code``, ``location``...) and its exit code."""
    exe = shutil.which("bids-validator-deno")
    assert exe, "bids-validator-deno is missing: install the test extra (pip install -e '.[test]')"
    proc = subprocess.run([exe, "--format", "json", str(dataset)], capture_output=True,
                          text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"bids-validator-deno gave no JSON (exit {proc.returncode}): "
                    f"{proc.stderr[-2000:]}")
    return report["issues"]["issues"], proc.returncode


def _listing(issues: list[dict]) -> str:
    return "\n".join(f"{i['severity']} {i['code']} {i.get('subCode') or ''} {i.get('location')}"
                     for i in issues)


def _check(dataset: Path, allowed_warnings: set[str]) -> None:
    issues, code = validate(dataset)
    errors = [i for i in issues if i["severity"] == "error"]
    assert not errors, f"{dataset}:\n{_listing(errors)}"
    assert code == 0, f"{dataset}: validator exit {code}"
    other = [i for i in issues if i["severity"] == "warning" and i["code"] not in
             allowed_warnings]
    assert not other, f"{dataset}: avoidable warnings\n{_listing(other)}"


def test_the_validator_reports_errors(tmp_path):
    """The check can fail: a derivative without the SpatialReference its space-individual
    label image requires, and a file BIDS has no name for, are errors."""
    root = tmp_path / "deriv"
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "brainiron"}]}))
    (root / "notes.txt").write_text("not a BIDS file\n")
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)),
             anat / "sub-01_space-individual_desc-brain_mask.nii.gz")
    issues, code = validate(root)
    found = {(i["code"], i.get("subCode")) for i in issues if i["severity"] == "error"}
    assert ("SIDECAR_KEY_REQUIRED", "SpatialReference") in found
    assert ("NOT_INCLUDED", None) in found
    assert code != 0


def test_raw_phantom_validates(run):
    _, bids, _ = run
    _check(bids, RAW_WARNINGS)


def test_phantom_truth_validates(run):
    _, bids, _ = run
    _check(truth_dir(bids), DERIVATIVE_WARNINGS)


def test_derivatives_validate(run):
    _, _, deriv = run
    _check(deriv, DERIVATIVE_WARNINGS)
    assert not re.search(r'"/(tmp|home|root|work)/', json.dumps(json.loads(
        (deriv / "dataset_description.json").read_text()))), "absolute path in the description"


def _sidecar_columns(sidecar: Path) -> list[str]:
    """The columns a TSV sidecar describes (its object-valued keys, in order)."""
    return [k for k, v in json.loads(sidecar.read_text()).items() if isinstance(v, dict)]


def test_every_tsv_has_a_sidecar_describing_exactly_its_columns(run):
    _, bids, deriv = run
    tsvs = [p for p in deriv.rglob("*.tsv") if "benchmarks" not in p.relative_to(deriv).parts]
    tsvs += sorted(truth_dir(bids).rglob("*.tsv"))
    assert len(tsvs) >= 8
    for tsv in tsvs:
        sidecar = tsv.with_suffix(".json")
        assert sidecar.is_file(), f"{tsv}: no sidecar"
        header = tsv.read_text().splitlines()[0].split("\t")
        assert _sidecar_columns(sidecar) == header, tsv


def test_every_nifti_has_its_own_sidecar(run):
    """Each image has a sidecar of its own entities (none inherits another map's, e.g. the
    goodness of fit R2starmap.json's Units 1/s); parametric maps say SkullStripped."""
    _, bids, deriv = run
    for image in [*deriv.rglob("*.nii.gz"), *truth_dir(bids).rglob("*_dseg.nii.gz")]:
        sidecar = image.with_name(image.name.removesuffix(".nii.gz") + ".json")
        assert sidecar.is_file(), f"{image}: no sidecar"
        meta = json.loads(sidecar.read_text())
        assert meta.get("Description"), sidecar
        if image.name.endswith(("map.nii.gz",)):
            assert meta["SkullStripped"] is False, sidecar


def _uri_target(uri: str, bids: Path, deriv: Path) -> Path:
    scheme, name, path = uri.split(":", 2)
    assert scheme == "bids" and name in ("raw", ""), uri
    return (bids if name == "raw" else deriv) / path


def test_sources_and_spatial_references_are_bids_uris_of_existing_files(run):
    _, bids, deriv = run
    links = json.loads((deriv / "dataset_description.json").read_text())["DatasetLinks"]
    assert (deriv / links["raw"]).resolve() == bids.resolve()
    checked = 0
    for dataset in (deriv, truth_dir(bids)):
        for sidecar in dataset.rglob("sub-*/**/*.json"):
            meta = json.loads(sidecar.read_text())
            uris = [*meta.get("Sources", []), meta.get("SpatialReference")]
            for uri in [u for u in uris if u and u.startswith("bids:")]:
                assert _uri_target(uri, bids, dataset).is_file(), f"{sidecar}: {uri}"
                checked += 1
    assert checked > 0


# --------------------------------------------------------------------------------------------
# pybids
# --------------------------------------------------------------------------------------------


def _pybids_layout(bids: Path, deriv: Path):
    import warnings

    from bids import BIDSLayout

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BIDSLayout(bids, derivatives=[truth_dir(bids), deriv])


#: io_spec.json entity key → pybids entity name
_PYBIDS = {"sub": "subject", "ses": "session", "desc": "desc", "space": "space",
           "atlas": "atlas", "from": "from", "to": "to", "mode": "mode"}


def test_pybids_reads_the_entities_brainiron_meant(run):
    name, bids, deriv = run
    lay = _pybids_layout(bids, deriv).derivatives["brainiron"]
    keys = sorted({"_".join(p.relative_to(deriv).parts[:-2]) for p in
                   deriv.glob("sub-*/**/anat/*")})
    assert keys == (["sub-01_ses-1", "sub-01_ses-2"] if name == "sessions" else ["sub-01"])
    fill = {"template": layout.TEMPLATE, "atlas": layout.ATLAS}
    seen = 0
    for key in keys:
        entities = dict(part.split("-", 1) for part in key.split("_"))
        for output, entry in SPEC["subject"].items():
            path = layout.subject_path(deriv, output, key)
            if not path.exists():
                continue
            got = lay.get_file(str(path)).get_entities()
            want = {_PYBIDS[k]: v.format(**fill) for k, v in
                    {**entities, **entry["entities"]}.items()}
            want.update(suffix=entry["suffix"], extension=entry["extension"], datatype="anat")
            assert got == want, f"{output}: {got} != {want}"
            seen += 1
    assert seen >= 12
    # one subject's data table, and nothing else (no benchmark, no log)
    query = {"subject": "01", "suffix": "stats", "desc": "regions", "extension": ".tsv"}
    if name == "sessions":
        query["session"] = "1"
    (table,) = lay.get(**query)
    assert Path(table.path) == layout.subject_path(deriv, "regions_stats", keys[0])


def test_pybids_never_takes_logs_benchmarks_or_figures_for_data(run):
    name, bids, deriv = run
    lay = _pybids_layout(bids, deriv).derivatives["brainiron"]
    data_suffixes = {entry["suffix"] for entry in SPEC["subject"].values()}
    for f in lay.get():
        rel = Path(f.path).relative_to(deriv)
        suffix = f.get_entities().get("suffix")
        if rel.parts[0] in ("logs", "benchmarks"):
            assert suffix not in data_suffixes | {"regions"}, f"{rel}: suffix {suffix}"
    for suffix in data_suffixes:
        for f in lay.get(subject="01", suffix=suffix):
            assert Path(f.path).relative_to(deriv).parts[0] == "sub-01", f.path
    maps = set(read_tsv(layout.group_path(deriv, "regions"))["map"])
    figures = lay.get(extension=".png")
    assert figures
    for f in figures:
        ents = f.get_entities()
        assert ents.get("desc") in maps | {"registration", None}, f.path
        if Path(f.path).name.startswith("group_desc-"):
            assert ents["desc"] in maps and ents["suffix"] in ("mean", "ironage"), f.path


def test_pybids_reads_the_group_tables_and_own_metadata(run):
    name, bids, deriv = run
    lay = _pybids_layout(bids, deriv).derivatives["brainiron"]
    tables = {Path(f.path).relative_to(deriv).as_posix(): f.get_entities() for f in
              lay.get(extension=".tsv") if f.path.startswith(str(deriv / "group"))}
    wide = layout.group_path(deriv, "regions_wide").relative_to(deriv).as_posix()
    assert tables[wide]["suffix"] == "regions" and tables[wide]["desc"] == "wide"
    assert tables["group/regions.tsv"] == {"suffix": "regions", "extension": ".tsv"}
    assert {e["suffix"] for e in tables.values()} == {"regions", "comparison", "failed",
                                                      "ignored"}
    if name == "megre-only":  # fitted maps: each its own units
        for output, units in (("r2star", "1/s"), ("t2star", "s"), ("r2star_goodness", "1")):
            meta = lay.get_metadata(str(layout.subject_path(deriv, output, "sub-01")))
            assert meta["Units"] == units, output
