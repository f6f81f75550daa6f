"""χ referenced to deep (ventricular) CSF (``chi_reference: csf``; brainiron.chi_reference),
and the workflow's refusal of ``qsm.reference: csf``.

The synthetic maps are painted with known values, so the expected reference is the painted
value, never one recomputed by the code under test.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from brainiron.chi_reference import MIN_CSF_REFERENCE_VOXELS, chi_csf_reference, voxel_sizes_mm
from brainiron.errors import ConfigError, InputError

VOXEL_MM = (1.5, 1.5, 3.0)
OFFSET_PPM = 0.037  # what background-field removal left: unknown to the code
DEEP_CSF_PPM = -0.004  # the ventricles (true χ of CSF)
EDGE_CSF_PPM = 0.30  # CSF near the mask edge (sulci, edge errors): must stay out
TISSUE_PPM = 0.05
DEPTH_MM = 10.0


def _phantom(outside=np.nan):
    """χ on a 1.5 × 1.5 × 3 mm grid: a box-shaped support (x, y 5..34, z 3..16), tissue
    0.05 ppm, a 6 × 6 × 3-voxel ventricle in the middle, edge CSF on the x = 5 face, and
    probes that only an anisotropic depth tells apart. Distances from the support's edge are
    (k + 1) × voxel size for the k-th voxel inside a face."""
    shape = (40, 40, 20)
    chi = np.full(shape, outside, np.float32)
    chi[5:35, 5:35, 3:17] = TISSUE_PPM
    csf = np.zeros(shape, bool)
    deep = np.zeros(shape, bool)
    deep[17:23, 17:23, 9:12] = True  # ≥ 18 mm from every face
    # z = 6: 4th voxel inside the z = 3 face → 12 mm deep (1.5 mm sampling would say 6 mm).
    deep[20, 20, 6] = True
    edge = np.zeros(shape, bool)
    edge[5, 8:32, 5:15] = True  # the x = 5 face: 1.5 mm deep
    # x = 8: 4th voxel inside the x = 5 face → 6 mm deep (3 mm sampling would say 12 mm).
    edge[8, 20, 10] = True
    edge[20, 12, 5] = True  # z = 5: 9 mm deep, just short of 10 mm
    csf[deep | edge] = True
    chi[deep] = DEEP_CSF_PPM
    chi[edge] = EDGE_CSF_PPM
    support = np.isfinite(chi) & (chi != 0)
    chi[support] += OFFSET_PPM
    return chi, csf, deep, support


@pytest.mark.parametrize("outside", [np.nan, 0.0])
def test_deep_csf_mean_is_the_reference_and_edge_csf_is_left_out(outside):
    chi, csf, deep, support = _phantom(outside)
    referenced, reference, n = chi_csf_reference(chi, csf, VOXEL_MM, DEPTH_MM)
    assert reference == pytest.approx(DEEP_CSF_PPM + OFFSET_PPM, abs=1e-7)
    assert n == 6 * 6 * 3 + 1
    # Referenced tissue: its true χ relative to CSF; the ventricle reads 0.
    tissue = support & ~csf
    np.testing.assert_allclose(referenced[tissue], TISSUE_PPM - DEEP_CSF_PPM, atol=1e-6)
    np.testing.assert_allclose(referenced[deep], 0.0, atol=1e-6)
    # Outside the support nothing changes (NaN stays NaN, 0 stays 0: "outside the map").
    if np.isnan(outside):
        assert np.isnan(referenced[~support]).all()
    else:
        assert (referenced[~support] == 0).all()


def test_isotropic_depth_would_take_the_wrong_voxels():
    """The depth is in mm along each axis: with the sizes swapped the probes change sides
    (the one at 12 mm along z drops out and the one at 6 mm along x comes in), so the
    reference moves away from the painted value."""
    chi, csf, _, _ = _phantom()
    _, wrong, n = chi_csf_reference(chi, csf, (3.0, 3.0, 1.5), DEPTH_MM)
    assert n != 6 * 6 * 3 + 1 and abs(wrong - (DEEP_CSF_PPM + OFFSET_PPM)) > 1e-3


def test_voxel_sizes_from_an_oblique_affine():
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(VOXEL_MM)
    np.testing.assert_allclose(voxel_sizes_mm(affine), VOXEL_MM)


def test_the_array_border_is_an_edge():
    """A support cut by the field of view: CSF next to the cut is not deep."""
    chi = np.full((30, 30, 30), 0.02, np.float32)  # support = the whole array
    csf = np.zeros(chi.shape, bool)
    csf[0:3, 10:20, 10:20] = True  # ≤ 3 mm from the x = 0 border at 1 mm
    with pytest.raises(ValueError, match="only 0 CSF voxels"):
        chi_csf_reference(chi, csf, (1.0, 1.0, 1.0), DEPTH_MM)


def test_too_few_deep_voxels_is_an_error_with_the_count():
    chi, csf, _, _ = _phantom()
    # 30 mm: no voxel is that deep (the support is 14 × 3 mm = 42 mm along z: at most 21 mm).
    with pytest.raises(ValueError, match=r"only 0 CSF voxels .* at least 30 mm") as err:
        chi_csf_reference(chi, csf, VOXEL_MM, 30.0)
    assert f"at least {MIN_CSF_REFERENCE_VOXELS}" in str(err.value)
    # 19 deep voxels (one short of the minimum): refused, naming 19.
    small = np.zeros_like(csf)
    small[17:23, 17:23, 10][np.unravel_index(np.arange(19), (6, 6))] = True
    with pytest.raises(ValueError, match="only 19 CSF voxels"):
        chi_csf_reference(chi, small, VOXEL_MM, DEPTH_MM)


def test_the_regions_step_names_the_chi_file(monkeypatch):
    """Step level: the error is brainiron's one line naming the χ map (before any output is
    written: main() writes its table only after every map)."""
    import brainiron.registration
    from brainiron.steps import regions as step

    chi, csf, _, _ = _phantom()
    monkeypatch.setattr(brainiron.registration, "native_tissue_mask",
                        lambda shape, affine, transforms, tissue, fraction: csf)
    smk = SimpleNamespace(params=SimpleNamespace(chi_reference="csf",
                                                 csf_reference_depth_mm=30.0),
                          input=SimpleNamespace(xfm_forward="sub-01_xfm.nii.gz"))
    affine = np.diag([*VOXEL_MM, 1.0])
    path = "/data/sub-01/anat/sub-01_Chimap.nii.gz"
    with pytest.raises(InputError) as err:
        step.chi_referenced(chi, path, smk, np.ones(chi.shape, np.uint8), affine)
    message = str(err.value)
    assert message.startswith(f"{path}: chi_reference csf: only 0 CSF voxels")
    assert "\n" not in message
    smk.params.csf_reference_depth_mm = DEPTH_MM
    referenced, name, value = step.chi_referenced(chi, path, smk, None, affine)
    assert name == "csf" and value == pytest.approx(DEEP_CSF_PPM + OFFSET_PPM, abs=1e-7)


def test_wholebrain_reference_keeps_the_maps_outside_out_of_the_statistics():
    """A region half outside an eroded χ mask (zeros there): after the whole-brain reference
    its statistics use only the voxels with a value (zeros would otherwise become −ref and
    count as data)."""
    from brainiron.regions import chi_wholebrain_reference, regional_statistics

    chi = np.zeros((10, 10, 10), np.float32)
    chi[:5] = 0.10          # inside the map's support
    chi[:5, :5] = 0.30      # a region's half inside the support holds 0.30 ppm
    brain = np.ones(chi.shape, bool)
    labels = np.zeros(chi.shape, np.int16)
    labels[:, :5, :5] = 1   # the region: half of it (x >= 5) outside the support
    ref_chi, ref = chi_wholebrain_reference(chi, brain)
    assert ref == pytest.approx((0.30 * 250 + 0.10 * 250) / 500)
    assert (ref_chi[5:] == 0).all()
    table = regional_statistics(ref_chi, labels, {("X", "L"): [1]}, voxel_volume_mm3=1.0)
    row = table.iloc[0]
    assert row["n_valid"] == 125 and row["coverage"] == pytest.approx(0.5)
    assert row["mean"] == pytest.approx(0.30 - ref, abs=1e-6)


def test_qsm_reference_csf_is_refused_with_one_line():
    from brainiron.workflow import check_config, merged_config

    with pytest.raises(ConfigError) as err:
        check_config(merged_config({"qsm": {"reference": "csf"}}))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("config.qsm.reference: 'csf'")
    assert "chi_reference: csf" in message
    check_config(merged_config({"chi_reference": "csf", "csf_reference_depth_mm": 8}))
    with pytest.raises(ConfigError, match="csf_reference_depth_mm"):
        check_config(merged_config({"csf_reference_depth_mm": -1}))


def test_methods_text_states_the_csf_reference():
    from brainiron.regions import describe

    text = describe(["Chimap"], "the BIDS dataset", "csf", 12.5)
    assert "deep (ventricular) cerebrospinal fluid" in text and "12.5 mm" in text
    assert "≥ 90 % inside the template's CSF class" in text
    assert "cerebrospinal" not in describe(["Chimap"], "the BIDS dataset", "wholebrain")


@pytest.mark.slow
def test_phantom_rows_are_csf_referenced(tmp_path):
    """One workflow run (1 subject, 4 mm, participant level; 41-65 s measured on 2 cores): every
    χ row has ``reference = csf`` and a reference value at the phantom's true CSF χ, and the
    medians of the atomic nuclei are their true χ relative to CSF (the phantom's χ has no
    reference subtracted; its CSF is 0 ppm).

    Measured: reference 0.38 ppb off the true CSF χ (93 deep-CSF voxels, all truly CSF in the
    phantom's tissue labels); atomic medians at most 8.3 ppb off (SNc_PBP_VTA L, 6 voxels;
    registration at 4 mm, not the reference). Tolerances: 3 ppb for the reference (the
    whole-brain mean of this phantom, -8.2 ppb, would fail it) and 12 ppb for
    the medians.
    """
    import brainiron
    from brainiron.io import read_tsv
    from brainiron.phantom import truth_path

    config = {"phantom": {"subjects": 1, "voxel_size": 4.0}, "chi_reference": "csf"}
    assert brainiron.run(None, tmp_path, cores=2, config=config,
                         analysis_level="participant") == 0
    table = read_tsv(tmp_path / "brainiron/sub-01/anat/sub-01_desc-regions_stats.tsv")
    chi = table[table["map"] == "Chimap"]
    assert len(chi) > 0 and (chi["reference"] == "csf").all()
    assert (table.loc[table["map"] != "Chimap", "reference"] == "none").all()
    truth = read_tsv(truth_path(tmp_path / "phantom", "sub-01"))
    csf_truth = float(truth.loc[truth["region"] == "CSF", "chi_ppm"].item())
    assert chi["reference_value"].nunique() == 1
    assert abs(chi["reference_value"].iloc[0] - csf_truth) < 0.003, chi["reference_value"]
    merged = chi.merge(truth[["region", "hemisphere", "chi_ppm"]], on=["region", "hemisphere"])
    atomic = merged[merged["region"].isin(["SNc_PBP_VTA", "SNr", "RN", "STN", "GPe", "GPi",
                                           "Pu", "Ca", "Thal", "DN"])]
    assert len(atomic) == 20
    error = (atomic["median"] - (atomic["chi_ppm"] - csf_truth)).abs()
    assert error.max() < 0.012, atomic.assign(error=error)
