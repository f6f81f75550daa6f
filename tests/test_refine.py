"""Contrast-aware refinement of SN / RN / STN (brainiron.refine) on the phantom's truth labels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from brainiron.refine import DEFAULT_REFINED_REGIONS, nucleus_groups, refine_nuclei
from helpers import composite_dice

#: Composite name → atomic labels (left; right = +10), as in regions.tsv.
GROUPS = {"SN": (1, 2), "RN": (3,), "STN": (4,)}
SUBJECTS = ("01", "02")


def _dices(est, truth) -> dict[str, float]:
    return {name: composite_dice(est, truth, members) for name, members in GROUPS.items()}


@pytest.fixture(scope="module")
def subjects(phantom_dir):
    """(truth labels, χ, R2*) per subject of the shared 3 mm phantom."""
    out = {}
    for sub in SUBJECTS:
        truth = nib.load(phantom_dir / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat"
                         / f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
        chi = nib.load(phantom_dir / f"sub-{sub}" / "anat" / f"sub-{sub}_Chimap.nii.gz")
        r2s = nib.load(phantom_dir / f"sub-{sub}" / "anat" / f"sub-{sub}_R2starmap.nii.gz")
        out[sub] = (np.asarray(truth.dataobj).astype(np.int16), chi.get_fdata(dtype=np.float32),
                    r2s.get_fdata(dtype=np.float32), chi.affine)
    return out


def _smooth_warp(labels: np.ndarray, amplitude_voxels: float, seed: int) -> np.ndarray:
    """Labels pulled through a smooth random displacement (max ``amplitude`` in the nuclei)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((3, 6, 6, 6))
    zoom = [s / 6 for s in labels.shape]
    disp = np.stack([ndimage.zoom(c, zoom, order=3)[tuple(slice(0, s) for s in labels.shape)]
                     for c in coarse])
    nuclei = np.isin(labels, [1, 2, 3, 4, 11, 12, 13, 14])
    disp *= amplitude_voxels / np.sqrt((disp ** 2).sum(0))[nuclei].max()
    coords = np.indices(labels.shape, dtype=np.float32) + disp
    return ndimage.map_coordinates(labels, coords, order=0, mode="nearest").astype(labels.dtype)


def test_groups_follow_the_region_table():
    groups = nucleus_groups(DEFAULT_REFINED_REGIONS)
    names = {(n, h): idx for n, h, idx in groups}
    assert names[("SN", "L")] == [1, 2] and names[("SN", "R")] == [11, 12]
    assert names[("RN", "L")] == [3] and names[("STN", "R")] == [14]
    assert len(groups) == 6
    # Only SNr requested: no composite, the atomic region alone.
    assert nucleus_groups(["SNr"]) == [("SNr", "L", [2]), ("SNr", "R", [12])]
    with pytest.raises(KeyError):
        nucleus_groups(["SN"])  # composites are not atomic regions


@pytest.mark.parametrize("map_index", [1, 2], ids=["Chimap", "R2starmap"])
def test_perfect_labels_are_kept(subjects, map_index):
    """On the truth labels refinement must not lower Dice by more than 0.01.

    (It may drop a boundary voxel whose value noise pushed below the threshold.)
    """
    for truth, *maps, _ in subjects.values():
        refined, info = refine_nuclei(truth, maps[map_index - 1])
        after = _dices(refined, truth)
        assert min(after.values()) >= 0.99, after
        assert info["status"].isin(["unchanged", "refined"]).all()
        assert (info["added"] + info["removed"]).sum() <= 0.02 * info["n_before"].sum()
        assert (info["contrast_sd"] > 5).all()


def test_shifted_labels_get_better(subjects):
    """Truth labels shifted by one voxel along each axis: SN Dice rises in every case."""
    before, after = [], []
    for truth, chi, _, _ in subjects.values():
        for axis in range(3):
            for step in (-1, 1):
                shifted = np.roll(truth, step, axis=axis)
                refined, _ = refine_nuclei(shifted, chi, margin_voxels=1)
                b, a = _dices(shifted, truth), _dices(refined, truth)
                assert a["SN"] > b["SN"] + 0.05, (axis, step, b, a)
                before.append(b)
                after.append(a)
    for name in GROUPS:
        mean_b = np.mean([d[name] for d in before])
        mean_a = np.mean([d[name] for d in after])
        assert mean_a > mean_b + 0.1, (name, mean_b, mean_a)


def test_smoothly_deformed_labels_get_better(subjects):
    """A smooth random deformation of up to 1.5 voxels (a poor registration)."""
    for k, (truth, chi, _, _) in enumerate(subjects.values()):
        warped = _smooth_warp(truth, 1.5, seed=k)
        refined, _ = refine_nuclei(warped, chi, margin_voxels=2)
        b, a = _dices(warped, truth), _dices(refined, truth)
        assert a["SN"] > b["SN"] + 0.1, (b, a)
        assert a["RN"] >= b["RN"] - 0.01 and a["STN"] >= b["STN"] - 0.01, (b, a)


def test_never_moves_voxels_between_nuclei(subjects):
    truth, chi, _, _ = subjects["01"]
    shifted = np.roll(truth, 1, axis=1)
    refined, info = refine_nuclei(shifted, chi)
    changed = refined != shifted
    # Every change is to or from background, and other nuclei are untouched.
    assert np.all((refined[changed] == 0) | (shifted[changed] == 0))
    others = ~np.isin(shifted, [1, 2, 3, 4, 11, 12, 13, 14]) & (shifted > 0)
    assert np.array_equal(refined[others], shifted[others])
    assert (info["added"] > 0).any() and (info["removed"] > 0).any()
    # Voxels that join SN take SNc_PBP_VTA or SNr, never another label.
    joined = (shifted == 0) & np.isin(refined, [1, 2])
    assert joined.any()


def test_without_contrast_nothing_changes(subjects):
    truth, chi, _, _ = subjects["01"]
    noise = np.random.default_rng(0).normal(0.0, 0.01, truth.shape).astype(np.float32)
    shifted = np.roll(truth, 1, axis=0)
    refined, info = refine_nuclei(shifted, noise)
    assert np.array_equal(refined, shifted)
    assert info["status"].str.startswith("skipped: contrast").all()


def test_missing_values_keep_their_label(subjects):
    truth, chi, _, _ = subjects["01"]
    shifted = np.roll(truth, -1, axis=2)
    holes = chi.copy()
    holes[np.isin(shifted, [1, 2])] = np.nan  # left SN label: no data at all
    refined, _ = refine_nuclei(shifted, holes)
    sn = np.isin(shifted, [1, 2])
    assert np.array_equal(refined[sn], shifted[sn])


def test_input_checks():
    with pytest.raises(ValueError, match="shape"):
        refine_nuclei(np.zeros((4, 4, 4), np.int16), np.zeros((4, 4, 5)))
    labels = np.zeros((5, 5, 5), np.int16)
    out, info = refine_nuclei(labels, np.ones((5, 5, 5)))
    assert np.array_equal(out, labels) and (info["status"] == "skipped: label absent").all()


@pytest.mark.slow
def test_affine_only_registration_gets_better(phantom_dir, tmp_path):
    """A real affine-only registration (no SyN): refinement raises SN Dice on χ and R2*."""
    from brainiron import registration as reg

    settings = reg.RegistrationSettings(transform="Affine", local_refinement=False)
    for sub in SUBJECTS:
        anat = phantom_dir / f"sub-{sub}" / "anat"
        truth = np.asarray(nib.load(
            phantom_dir / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat"
            / f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz").dataobj).astype(np.int16)
        t1 = nib.load(anat / f"sub-{sub}_T1w.nii.gz")
        chi = nib.load(anat / f"sub-{sub}_Chimap.nii.gz")
        result = reg.register(t1.get_fdata(dtype=np.float32), t1.affine, tmp_path / sub,
                              settings, contrast="T1w")
        labels = reg.warp_labels(truth.shape, chi.affine, result.forward)
        before = _dices(labels, truth)
        assert before["SN"] < 0.9, before  # the registration is imperfect, as intended
        for name in ("Chimap", "R2starmap"):
            values = nib.load(anat / f"sub-{sub}_{name}.nii.gz").get_fdata(dtype=np.float32)
            refined, _ = refine_nuclei(labels, values, margin_voxels=2)
            after = _dices(refined, truth)
            # χ: every nucleus passes the contrast test; R2* (lower contrast-to-noise on the
            # phantom) may leave one SN side as registered (contrast 4.6 < 5 SD for sub-01).
            gain = 0.1 if name == "Chimap" else 0.03
            assert after["SN"] > before["SN"] + gain, (sub, name, before, after)
            assert after["RN"] >= before["RN"] - 0.02, (sub, name, before, after)
            assert after["STN"] >= before["STN"] - 0.02, (sub, name, before, after)


def test_smooth_noise_is_not_contrast(subjects):
    """Spatially correlated noise (as QSM inversion and interpolation make it) is left alone."""
    truth = subjects["01"][0]
    shifted = np.roll(truth, 1, axis=0)
    rng = np.random.default_rng(3)
    for sigma in (1.0, 1.5, 2.0):
        noise = ndimage.gaussian_filter(rng.standard_normal(truth.shape), sigma)
        refined, info = refine_nuclei(shifted, noise.astype(np.float32) + 5.0)
        assert np.array_equal(refined, shifted), (sigma, info[["status", "contrast_sd"]])
        assert info["status"].str.startswith("skipped").all()


def test_label_on_dark_tissue_is_left_alone():
    """A label (RN, r = 4 voxels) mostly on dark tissue beside a bright blob (a vein)."""
    shape = (40, 40, 40)
    centre = np.array(shape) // 2
    ijk = np.indices(shape)

    def sphere(c, r):
        return np.sqrt(((ijk - np.asarray(c)[:, None, None, None]) ** 2).sum(0)) <= r

    labels = np.zeros(shape, np.int16)
    labels[sphere(centre, 4)] = 3
    for offset, expected in ((6, "skipped: the label is not on the bright class"),
                             (3, "refined")):  # 9 % vs 46 % of the label on the blob
        values = np.full(shape, 0.01, np.float32)
        values[sphere(centre + [offset, 0, 0], 4)] = 0.4
        values += np.random.default_rng(0).normal(0, 0.002, shape).astype(np.float32)
        refined, info = refine_nuclei(labels, values, regions=["RN"], margin_voxels=2)
        row = info[info["hemisphere"] == "L"].iloc[0]
        assert row["status"] == expected, (offset, info)
        assert row["contrast_sd"] > 100  # the blob is real contrast: only the check stops it
        assert np.array_equal(refined, labels) == (expected != "refined")


def test_describe_follows_the_settings():
    from brainiron import settings
    from brainiron.refine import describe

    assert DEFAULT_REFINED_REGIONS is settings.DEFAULT_REFINED_REGIONS
    assert describe(settings.RefinementSettings()) == ""
    text = describe(settings.RefinementSettings(enabled=True, regions=("RN", "STN"),
                                                margin_voxels=2, min_contrast=4.5))
    assert text == ("The boundaries of RN, STN were refined from the χ / R2* contrast (up to 2 "
                    "voxel(s) outwards; a two-class threshold applied when the nucleus-surround "
                    "contrast exceeded 4.5 noise SDs); the tables give both the atlas and the "
                    "refined statistics.")


def test_refine_labels_uses_the_settings_and_keeps_the_labels_on_failure():
    from brainiron.refine import qc_table, refine_labels
    from brainiron.settings import RefinementSettings

    shape = (30, 30, 30)
    ijk = np.indices(shape)
    labels = np.zeros(shape, np.int16)
    labels[np.sqrt(((ijk - 15) ** 2).sum(0)) <= 3] = 3  # RN left, r = 3 voxels
    values = np.where(np.sqrt(((ijk - 15 - np.array([1, 0, 0])[:, None, None, None]) ** 2)
                              .sum(0)) <= 3, 0.2, 0.01)
    values = values + np.random.default_rng(1).normal(0, 0.002, shape)
    values[0, 0, 0] = np.nan  # missing values are zeroed, not an error
    settings = RefinementSettings(enabled=True, regions=("RN",), margin_voxels=2)
    refined, info = refine_labels(labels, values, settings, (1.0, 1.0, 1.0))
    expected, expected_info = refine_nuclei(labels, np.nan_to_num(values), regions=("RN",),
                                            margin_voxels=2)
    assert np.array_equal(refined, expected)
    pd.testing.assert_frame_equal(info, expected_info)
    assert "refined" in set(info["status"])

    table = qc_table(info, "Chimap", "ppm")
    assert list(table.columns[:2]) == ["map", "units"] and (table["units"] == "ppm").all()
    assert table["label_indices"].tolist() == ["3", "13"]
    assert isinstance(info["label_indices"].iloc[0], list)  # info is not modified

    failed, why = refine_labels(labels, values[:-1], settings, (1.0, 1.0, 1.0))
    assert failed is labels
    assert why["status"].iloc[0].startswith("failed: ValueError: labels (30, 30, 30)")
    assert qc_table(why, "Chimap", "ppm")["label_indices"].tolist() == [""]
