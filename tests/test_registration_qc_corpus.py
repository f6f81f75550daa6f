"""The QC corpus benchmark's functions on three cases (benchmarks/bench_qc_corpus.py).

One correct magnitude-registered subject and two broken ones (the magnitude and every map
stored upside down; two axes swapped) of a coarse realistic phantom. Whether a case is good
or broken is measured against the phantom's truth labels (Dice), which neither the
registration nor the QC computed; the QC must pass the good case and flag both broken ones.
The registration's own measures pass both broken cases (a magnitude registered with mutual
information deforms little and a brain-shaped blob covers the template brain); the labels'
iron contrast on the χ map catches them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_qc_corpus as bench  # noqa: E402

DATASET = {"t": {"seed": 14, "chi_outside": "nan", "n_subjects": 2}}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return bench.build_corpus(tmp_path_factory.mktemp("qc-corpus"), voxel=(4.0, 4.0, 4.0),
                              t1w_voxel=(4.0, 4.0, 4.0), datasets=DATASET)


@pytest.mark.parametrize("modification", ["none", "flip2", "swap12"])
def test_qc_separates_good_from_broken(roots, modification):
    case = {"dataset": "t", "sub": "02", "path": "MEGRE", "modification": modification}
    row, labels = bench.run_case(roots, case)
    row = bench.decide(row, labels, bench.case_inputs(roots, case)["maps"])
    if modification == "none":
        # 4 mm magnitude registration: mean nucleus Dice ~0.6 (0.74-0.9 at 3 mm); not failed.
        assert row["outcome"] != "failed" and row["dice_mean"] > 0.5, row
        assert not row["flagged"], row
        assert row["label_contrast"]["iron_contrast"] > 0.6
    else:
        assert row["outcome"] == "failed" and row["dice_mean"] < 0.3, row
        assert not row["flagged_registration"]  # the known gap of the registration's QC
        assert row["flagged"] and "iron contrast" in row["label_contrast"]["flag"], row
        assert row["label_contrast"]["iron_contrast"] < 0.2
