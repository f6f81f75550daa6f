"""The wheel runs the workflow: built from a copy of the package (no source tree, no root
``Snakefile``), installed in a fresh venv, ``brainiron run`` analyses a 1-subject 4 mm phantom.

Only brainiron comes from the wheel (``--no-deps``): the venv sees this environment's
site-packages (``--system-site-packages``) for the dependencies, so the test needs no
download but the build backend (setuptools, from the registry, as any ``pip wheel``). The
runs happen in a folder outside the source tree and without ``PYTHONPATH``, and the test
checks that ``import brainiron`` resolves to the venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env, timeout):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with brainiron installed from a freshly built wheel; (python, env, folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist",
          source], tmp, env, 600)
    (wheel,) = (tmp / "dist").glob("brainiron-*.whl")
    venv.create(tmp / "venv", system_site_packages=True, with_pip=True)
    python = tmp / "venv" / "bin" / "python"
    # --ignore-installed: this environment's (editable) brainiron is visible to the venv.
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", wheel],
         tmp, env, 600)
    work = tmp / "work"
    work.mkdir()
    return python, env, work


def test_the_wheel_holds_the_workflow_and_imports_from_the_venv(installed):
    python, env, work = installed
    out = _run([python, "-c", "import brainiron, brainiron.workflow as w; "
                "print(brainiron.__file__); print(w.SNAKEFILE); print(w.DEFAULT_CONFIG); "
                "print(sorted(p.name for p in (w.SNAKEFILE.parent / 'rules').glob('*.smk')))"],
               work, env, 120).splitlines()
    venv_dir = python.parents[1]
    for path in out[:3]:
        assert Path(path).is_relative_to(venv_dir) and Path(path).is_file(), path
        assert not Path(path).is_relative_to(ROOT), path
    assert "register.smk" in out[3] and "tables.smk" in out[3]


def test_brainiron_run_from_the_wheel(installed):
    python, env, work = installed
    brainiron = python.parent / "brainiron"
    _run([brainiron, "run", "", "out", "--cores", "2", "--config", "phantom.subjects=1",
          "phantom.voxel_size=4.0"], work, env, 900)
    regions = pd.read_csv(work / "out" / "brainiron" / "group" / "regions.tsv", sep="\t")
    assert len(regions) > 0
    assert set(regions["participant_id"]) == {"sub-01"}
    assert (work / "out" / "brainiron" / "report" / "index.html").is_file()
