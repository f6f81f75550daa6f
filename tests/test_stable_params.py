"""Rule parameters carry only what changes a result (issue 13, "stable rule parameters").

After a complete run, adding a file the workflow does not use to a subject's ``anat/``
folder must not re-run any of that subject's rules nor the group tables: only
``group/ignored.tsv``, which lists the new file, and the report that shows it. Changing a
registration setting must re-run the registration: the positive control that shows the dry
run would see a change.

One subject at 4 mm: one run of about 30 s on 2 cores, then dry runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brainiron.phantom import generate_phantom

pytestmark = pytest.mark.slow

SUBJECT_RULES = {"validate", "relaxometry", "register", "refine", "regions"}


def _brainiron(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "brainiron.cli", "run", *args],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _planned_rules(bids: Path, out: Path, *config: str) -> set[str]:
    """Rules a dry run would execute (Snakemake's job-count table)."""
    args = [str(bids), str(out), "--cores", "2", "--dry-run"]
    if config:
        args += ["--config", *config]
    proc = _brainiron(*args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    rules = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            rules.add(parts[0])
    assert rules, f"no job table in the dry run's output:\n{text[-2000:]}"
    return rules


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stable")
    bids = root / "bids"
    generate_phantom(bids, n_subjects=1, seed=8, voxel_size=(4.0, 4.0, 4.0))
    out = root / "out"
    _brainiron(str(bids), str(out), "--cores", "2")
    assert _planned_rules(bids, out) == set()
    return bids, out


def test_unrelated_file_reruns_no_subject_rule(finished):
    bids, out = finished
    anat = bids / "sub-01" / "anat"
    shutil.copy(anat / "sub-01_T1w.nii.gz", anat / "sub-01_FLAIR.nii.gz")
    (anat / "notes.txt").write_text("scanned on a Tuesday\n")
    planned = _planned_rules(bids, out)
    assert not planned & SUBJECT_RULES, planned
    # ignored.tsv lists the new files; the group tables and the comparison are not re-made.
    assert planned == {"ignored", "report", "check", "all"}, planned


def test_changed_setting_reruns_registration(finished):
    bids, out = finished
    planned = _planned_rules(bids, out, "registration.syn_sampling=3")
    assert {"register", "regions"} <= planned, planned
    assert "validate" not in planned
