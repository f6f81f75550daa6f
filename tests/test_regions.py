import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainiron import atlas, regional_stats
from brainiron.regions import RegionIndex, regional_statistics


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(4)
    labels = np.zeros((30, 32, 28), np.int16)
    labels[5:12, 5:15, 5:12] = 1
    labels[12:16, 5:15, 5:12] = 2
    labels[20:26, 10:20, 10:20] = 7
    labels[2:4, 2:4, 2:4] = 11  # a 8-voxel region
    values = rng.normal(0.1, 0.03, labels.shape).astype(np.float32)
    values[labels == 2] += 0.2
    values[6, 6, 6] = np.nan       # missing
    values[7, 7, 7] = 0.0          # outside the map's mask
    values[21:26, 10:20, 10:20] = 0.0  # partial coverage of region 7
    return values, labels


def _brute(values, labels, members):
    mask = np.isin(labels, members)
    v = values[mask]
    v = v[np.isfinite(v) & (v != 0)]
    return mask.sum(), v.astype(np.float64)  # brainiron accumulates in float64


def test_every_statistic_matches_numpy(volume):
    values, labels = volume
    regions = {("SNc_PBP_VTA", "L"): [1], ("SNr", "L"): [2], ("SN", "L"): [1, 2],
               ("Pu", "L"): [7], ("SNc_PBP_VTA", "R"): [11], ("RN", "L"): [3]}
    table = regional_statistics(values, labels, regions, voxel_volume_mm3=8.0)
    table = table.set_index(["region", "hemisphere"])
    for key, members in regions.items():
        n, v = _brute(values, labels, members)
        row = table.loc[key]
        assert row["n_voxels"] == n and row["volume_mm3"] == 8.0 * n
        assert row["n_valid"] == v.size
        if v.size == 0:
            assert np.isnan(row["mean"]) and np.isnan(row["median"])
            continue
        assert row["coverage"] == pytest.approx(v.size / n)
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-9)
        assert row["sd"] == pytest.approx(v.std(ddof=1), rel=1e-9)
        for col, q in [("p05", 5), ("p25", 25), ("median", 50), ("p75", 75), ("p95", 95)]:
            assert row[col] == pytest.approx(np.percentile(v, q), rel=1e-9), col
        assert row["min"] == v.min() and row["max"] == v.max()
    # Partial coverage is reported, not hidden.
    assert table.loc[("Pu", "L"), "coverage"] == pytest.approx(1 / 6)
    # A label absent from the image gives an empty row.
    assert table.loc[("RN", "L"), "n_voxels"] == 0


def test_probability_weighted_mean(volume):
    values, labels = volume
    regions = {("SNc_PBP_VTA", "L"): [1], ("SN", "L"): [1, 2]}
    box = (slice(3, 20), slice(3, 18), slice(3, 15))
    probs = np.zeros((17, 15, 12, 2), np.float32)
    sub = labels[box]
    probs[..., 0] = (sub == 1) * 1.0
    probs[..., 1] = (sub == 2) * 0.5
    table = regional_statistics(values, labels, regions, probabilities=probs,
                                probability_labels=[1, 2], probability_slices=box)
    table = table.set_index(["region", "hemisphere"])
    v = values[box]
    ok = np.isfinite(v) & (v != 0)
    p1, p2 = probs[..., 0] * ok, probs[..., 1] * ok
    v0 = np.where(ok, v, 0)
    assert table.loc[("SNc_PBP_VTA", "L"), "mean_pw"] == pytest.approx(
        (p1 * v0).sum() / p1.sum(), rel=1e-5)
    assert table.loc[("SN", "L"), "mean_pw"] == pytest.approx(
        ((p1 + p2) * v0).sum() / (p1 + p2).sum(), rel=1e-5)


def test_index_is_reusable_and_checks_the_grid(volume):
    values, labels = volume
    index = RegionIndex(labels, {("x", "L"): [1]})
    a = index.statistics(values)
    b = index.statistics(values * 2)
    assert b["mean"].iloc[0] == pytest.approx(2 * a["mean"].iloc[0])
    with pytest.raises(ValueError, match="differs from the label grid"):
        index.statistics(values[:-1])


def test_regional_stats_from_paths(tmp_path, volume):
    values, labels = volume
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(values, affine), tmp_path / "map.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "dseg.nii.gz")
    table = regional_stats(tmp_path / "map.nii.gz", str(tmp_path / "dseg.nii.gz"))
    assert isinstance(table, pd.DataFrame)
    # brainiron's own labels: atomic and composite regions by name.
    sn = table.set_index(["region", "hemisphere"]).loc[("SN", "L")]
    _, v = _brute(values, labels, [1, 2])
    assert sn["mean"] == pytest.approx(v.mean()) and sn["volume_mm3"] == 8.0 * 7 * 10 * 11
    nib.save(nib.Nifti1Image(values, np.diag([2.0, 2.0, 2.5, 1.0])), tmp_path / "other.nii.gz")
    with pytest.raises(ValueError, match="not on the same grid"):
        regional_stats(tmp_path / "other.nii.gz", tmp_path / "dseg.nii.gz")


def test_full_size_atlas_one_pass_matches_masks():
    labels = np.asarray(atlas.template_labels().data)
    rng = np.random.default_rng(1)
    values = rng.normal(0.05, 0.05, labels.shape).astype(np.float32)
    members = atlas.composite_members()
    table = regional_statistics(values, labels, members).set_index(["region", "hemisphere"])
    for key in [("SN", "R"), ("GP", "L"), ("Thal", "R"), ("STN", "L")]:
        _, v = _brute(values, labels, members[key])
        assert table.loc[key, "median"] == pytest.approx(np.median(v), rel=1e-9)
        assert table.loc[key, "mean"] == pytest.approx(v.mean(), rel=1e-9)
