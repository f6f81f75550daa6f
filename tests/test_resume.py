"""Crash safety and determinism of the workflow (docs/reliability.md).

* ``kill -9`` of ``brainiron run`` (the whole process group: Snakemake and its jobs) while a
  registration is running, then the same command again: the final ``group/regions.tsv`` is
  byte-identical to an uninterrupted run's and no temporary file remains.
* Two uninterrupted runs of the same inputs and configuration into two folders give
  byte-identical tables and label images; the files that differ are the ones that record
  where and when the run happened.

A 2-subject phantom at 4 mm: three runs of about 40 s each on 2 cores.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainiron.phantom import generate_phantom

pytestmark = pytest.mark.slow

PHANTOM = {"n_subjects": 2, "seed": 4, "voxel_size": (4.0, 4.0, 4.0)}
SUBJECTS = ("sub-01", "sub-02")
TEMPORARY = re.compile(r"^\..+\.tmp(\..*)?$|^\.ants-|^\.brainiron-write-test-")
#: Files that record where (output_dir) or when (timestamps, seconds) a run happened.
NOT_IDENTICAL = {"dataset_description.json", "report/index.html",
                 *(f"{s}/anat/{s}_desc-registration_qc.json" for s in SUBJECTS)}


def _command(bids: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "brainiron.cli", "run", str(bids), str(out), "--cores", "2"]


def _run(bids: Path, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(bids, out), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _temporaries(out: Path) -> list[str]:
    return [str(Path(folder, n)) for folder, dirs, files in os.walk(out)
            for n in dirs + files if TEMPORARY.match(n)]


def _outputs(out: Path) -> dict[str, bytes]:
    """Every derivative (logs and benchmarks aside: they hold times) by relative path."""
    deriv = out / "brainiron"
    return {str(p.relative_to(deriv)): p.read_bytes() for p in sorted(deriv.rglob("*"))
            if p.is_file() and p.relative_to(deriv).parts[0] not in ("logs", "benchmarks")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "bids"
    generate_phantom(root, **PHANTOM)
    return root


@pytest.fixture(scope="module")
def reference(dataset) -> Path:
    out = dataset.parent / "uninterrupted"
    _run(dataset, out)
    return out


def _registering(out: Path) -> bool:
    """A registration is running: its ANTs scratch folder exists."""
    return any((out / "brainiron").glob("sub-*/anat/.ants-*"))


def test_kill_9_during_registration_then_rerun(dataset, reference):
    out = dataset.parent / "killed"
    with open(dataset.parent / "killed.log", "w") as log:
        proc = subprocess.Popen(_command(dataset, out), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not _registering(out):
                assert proc.poll() is None, "the run ended before a registration started"
                assert time.monotonic() < deadline, "no registration started within 300 s"
                time.sleep(0.2)
            time.sleep(2.0)  # inside the registration (about 13 s per subject at 4 mm)
            assert proc.poll() is None
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # What kill -9 leaves: no group table yet, the registration's scratch, Snakemake's lock
    # and its incomplete-output markers.
    assert not (out / "brainiron/group/regions.tsv").exists()
    assert _temporaries(out)
    assert any((out / ".snakemake" / "locks").iterdir())
    assert any((out / ".snakemake" / "incomplete").iterdir())

    rerun = _run(dataset, out)
    assert "an earlier run was interrupted" in rerun.stderr
    assert (out / "brainiron/group/regions.tsv").read_bytes() == \
        (reference / "brainiron/group/regions.tsv").read_bytes()
    for sub in SUBJECTS:
        name = f"{sub}/anat/{sub}_space-individual_atlas-CIT168_dseg.nii.gz"
        assert (out / "brainiron" / name).read_bytes() == \
            (reference / "brainiron" / name).read_bytes()
    assert _temporaries(out) == []
    assert not any((out / ".snakemake" / "locks").iterdir())


def test_same_inputs_same_outputs(dataset, reference):
    """Two runs, two folders: identical tables and labels (same threads and cores)."""
    second = dataset.parent / "second"
    _run(dataset, second)
    a, b = _outputs(reference), _outputs(second)
    assert a.keys() == b.keys()
    for name in ("group/regions.tsv", "group/desc-wide_regions.tsv", "group/group_comparison.tsv",
                 *(f"{s}/anat/{s}_space-individual_atlas-CIT168_dseg.nii.gz" for s in SUBJECTS),
                 *(f"{s}/anat/{s}_desc-regions_stats.tsv" for s in SUBJECTS)):
        assert a[name] == b[name], name
    differing = {name for name in a if a[name] != b[name]}
    assert differing <= NOT_IDENTICAL, differing - NOT_IDENTICAL
    assert _temporaries(second) == []
