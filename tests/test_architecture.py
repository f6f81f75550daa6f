"""The shape the architecture issue (13) left, kept from regressing: modules of at most 500
lines, functions of at most 100, no private name used across modules, every rule its own
script that runs its own step module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "brainiron"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_sizes(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 500, f"{path.name}: {len(text.splitlines())} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > 100]
    assert not long, long


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_names_across_modules(path):
    """No ``from x import _private`` and no ``module._private`` of another module."""
    tree = ast.parse(path.read_text())
    imported_modules = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"from {'.' * node.level}{node.module or ''} import {a.name}"
                      for a in node.names if _private(a.name)]
            imported_modules |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            imported_modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) \
                and isinstance(node.value, ast.Name) and node.value.id in imported_modules:
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    assert not found, found


def test_every_rule_names_its_own_script_which_runs_its_step():
    rules = {}
    for smk in sorted((PACKAGE / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        rule_re = r"^\s*(?:rule|checkpoint) (\w+):(.*?)(?=^\s*(?:rule|checkpoint) |\Z)"
        for match in re.finditer(rule_re, text, flags=re.M | re.S):
            name, body = match.groups()
            script = re.search(r'script:\s*\n\s*"([^"]+)"', body)
            rules[name] = script.group(1) if script else None
    assert {"validate", "register", "regions", "group", "report"} <= set(rules)
    for name, script in rules.items():
        assert script == f"../scripts/{name}.py", f"rule {name}: script {script}"
        text = (PACKAGE / "workflow" / "scripts" / f"{name}.py").read_text()
        assert f"from brainiron.steps import {name}\n" in text, name
        assert (PACKAGE / "steps" / f"{name}.py").exists(), name


def test_snakemake_lint_is_clean(phantom_dir, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile",
                           str(ROOT / "Snakefile"), "--directory", str(ROOT), "--config",
                           f"bids_dir={phantom_dir}", f"output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in text, text[-3000:]


def test_root_snakefile_runs_the_packaged_workflow(phantom_dir, tmp_path):
    """The checkout's Snakefile includes the packaged one (src/brainiron/workflow/, what a
    wheel runs) and keeps `snakemake` without a target running everything."""
    import subprocess
    import sys

    assert (ROOT / "workflow").resolve() == PACKAGE / "workflow"
    assert (ROOT / "config" / "config.yaml").resolve() == PACKAGE / "config" / "config.yaml"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2",
                           "--config", f"bids_dir={phantom_dir}", f"output_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    for rule in ("register", "group", "report", "default"):
        assert f"rule {rule}:" in text, rule
