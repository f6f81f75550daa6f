"""Golden test: the workflow's group tables and label images are those of the code before
the architecture refactor (issue 13), on three small phantoms that between them take every
code path (T1w, magnitude and χ-only registration; fitted R2*; contrast refinement; the
whole-brain χ reference). See ``tests/golden/generate.py``.

A regression fixture, not ground truth (accuracy against the phantom's truth is tested in
test_workflow.py and elsewhere): every statistic must agree to float precision and every
label voxel must be identical. ANTs is deterministic at a fixed thread count
(docs/reliability.md), which the generator fixes at 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import generate  # noqa: E402

pytestmark = pytest.mark.slow


def _read(path: Path) -> pd.DataFrame:
    from brainiron.io import read_tsv

    return read_tsv(path, dtype={"participant_id": str, "session_id": str})


@pytest.fixture(scope="module", params=sorted(generate.VARIANTS))
def variant(request, tmp_path_factory):
    deriv = generate.run_variant(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, deriv


def test_group_tables_identical(variant):
    name, deriv = variant
    tables, _ = generate.collect(deriv)
    for table, path in tables.items():
        expected = _read(generate.DATA / name / table)
        got = _read(path)
        assert list(got.columns) == list(expected.columns), f"{name}/{table}: columns differ"
        assert len(got) == len(expected), f"{name}/{table}: rows differ"
        numeric = expected.select_dtypes("number").columns
        pd.testing.assert_frame_equal(got.drop(columns=numeric), expected.drop(columns=numeric),
                                      check_dtype=False, obj=f"{name}/{table}")
        np.testing.assert_allclose(got[numeric].to_numpy(float),
                                   expected[numeric].to_numpy(float), rtol=1e-12, atol=0,
                                   equal_nan=True, err_msg=f"{name}/{table}")


def test_label_images_identical(variant):
    name, deriv = variant
    _, images = generate.collect(deriv)
    with np.load(generate.DATA / name / "images.npz") as expected:
        assert sorted(images) == sorted(expected.files), f"{name}: label files differ"
        for key in expected.files:
            got, want = images[key], expected[key]
            assert got.shape == want.shape, key
            differing = int((got != want).sum())
            assert differing == 0, f"{key}: {differing} of {want.size} voxels differ"
