"""The χ-contrast template and registration of χ-only subjects (brainiron.registration)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainiron import atlas, norms
from brainiron import registration as reg
from brainiron.dentate import dentate_prior
from brainiron.iron import value_from_iron
from brainiron.masks import chi_brain_mask
from brainiron.phantom import generate_phantom, truth_path
from brainiron.registration import CHI_TEMPLATE_AGE_YEARS, chi_template, chi_template_values
from helpers import composite_dice

#: Composite name → atomic labels (left; right = +10), as in regions.tsv.
GROUPS = {"SN": (1, 2), "RN": (3,), "STN": (4,), "GP": (5, 6), "Pu": (7,)}
#: The issue's done-criterion: Dice of these within 0.05 of the T1w path.
CRITERION = ("SN", "RN", "GP", "Pu")


def test_values_come_from_the_tables():
    values = chi_template_values()
    cal = norms.calibrations().loc["langkammer2012_chi"]
    tissues = norms.phantom_tissues()
    for tissue, row in tissues.iterrows():
        iron = 0.0
        if isinstance(row["norm_region"], str):
            iron = float(norms.expected_iron(row["norm_region"], CHI_TEMPLATE_AGE_YEARS)) \
                * row["relative_to_norm"]
        expected = float(value_from_iron(iron, cal)) + row["chi_offset_ppm"]
        assert values.loc[tissue, "chi_ppm"] == pytest.approx(expected), tissue
    chi = values["chi_ppm"]
    # Physiology the template must show: WM diamagnetic, CSF ~ 0, GP/SN/RN/STN the brightest.
    assert chi["WM"] < chi["CSF"] < chi["GM"] < chi["Thal"] < chi["Ca"] < chi["Pu"]
    assert abs(chi["CSF"]) < 0.01
    assert min(chi[["SNr", "RN", "STN", "GPe"]]) > chi["Pu"]
    # Another calibration or age changes the nuclei.
    older = chi_template_values(age_years=80.0)["chi_ppm"]
    assert older["Pu"] > chi["Pu"]
    with pytest.raises(ValueError, match="not Chimap"):
        chi_template_values(calibration="gelman1999_invivo_r2star")


def test_template_image():
    data, affine = chi_template()
    tpl = atlas.load_reference("template")
    assert data.shape == tpl.data.shape and np.allclose(affine, tpl.affine)
    assert data.dtype == np.float32 and not data.flags.writeable
    assert np.all(data[tpl.data == 0] == 0)  # 0 outside the brain, like a masked χ map
    values = chi_template_values()["chi_ppm"]
    labels = atlas.template_labels().data
    table = atlas.region_table().set_index("index")
    for index in (1, 3, 7, 19):
        region = table.loc[index, "region"]
        assert np.allclose(data[labels == index], values[region])
    tissues = atlas.template_tissues().data
    dentate = dentate_prior().data > 0
    assert dentate.sum() > 1000  # ~800 mm3 per side
    assert np.allclose(data[dentate], values["DN"])
    assert np.allclose(data[(labels == 0) & (tissues == 3) & ~dentate], values["WM"])
    # Cached, and the blurred version keeps the mean but is smoother.
    assert chi_template()[0] is data
    blurred, _ = chi_template(3.0)
    assert blurred.mean() == pytest.approx(data.mean(), rel=0.02)
    assert np.abs(np.diff(blurred, axis=0)).max() < 0.5 * np.abs(np.diff(data, axis=0)).max()


def test_brain_mask():
    chi = np.zeros((30, 30, 30), np.float32)
    ijk = np.indices(chi.shape)
    ball = ((ijk - 15) ** 2).sum(0) <= 100
    chi[ball] = np.random.default_rng(0).normal(0, 0.02, int(ball.sum()))
    chi[15, 15, 15] = 0.0          # a zero inside: a hole, filled
    chi[14, 15, 15] = np.nan       # NaN inside: filled too
    chi[1:3, 1:3, 1:3] = 0.1       # a separate speck: dropped
    mask = chi_brain_mask(chi)
    assert np.array_equal(mask, ball)
    assert not chi_brain_mask(np.zeros((5, 5, 5))).any()


@pytest.fixture(scope="module")
def oblique_pair(tmp_path_factory):
    """One oblique subject, generated twice from one seed: with T1w, and χ-only."""
    base = tmp_path_factory.mktemp("chireg")
    common = {"n_subjects": 1, "seed": 5, "voxel_size": (3.0, 3.0, 3.0),
              "orientation": "oblique", "with_megre": False, "with_r2starmap": False}
    generate_phantom(base / "t1", with_t1w=True, **common)
    generate_phantom(base / "chi", with_t1w=False, **common)
    return base


@pytest.mark.slow
def test_chi_only_registration_matches_t1w(oblique_pair, tmp_path):
    """χ-only (χ template) vs T1w (T1 template) registration of the same subject."""
    anat = oblique_pair / "chi" / "sub-01" / "anat"
    assert not list(anat.glob("*T1w*")) and not list(anat.glob("*MEGRE*"))
    truth = np.asarray(nib.load(truth_path(
        oblique_pair / "chi", "sub-01", {"space": "individual", "atlas": "CIT168"}, "dseg",
        ".nii.gz")).dataobj).astype(np.int16)
    chi_img = nib.load(anat / "sub-01_Chimap.nii.gz")
    chi = chi_img.get_fdata(dtype=np.float32)
    t1 = nib.load(oblique_pair / "t1" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")

    by_chi = reg.register(chi, chi_img.affine, tmp_path / "chi", contrast="Chimap")
    by_t1 = reg.register(t1.get_fdata(dtype=np.float32), t1.affine, tmp_path / "t1",
                         contrast="T1w")
    assert by_chi.template == "chi" and by_t1.template == "T1w"
    lab_chi = reg.warp_labels(truth.shape, chi_img.affine, by_chi.forward)
    lab_t1 = reg.warp_labels(truth.shape, chi_img.affine, by_t1.forward)
    d_chi = {k: composite_dice(lab_chi, truth, m) for k, m in GROUPS.items()}
    d_t1 = {k: composite_dice(lab_t1, truth, m) for k, m in GROUPS.items()}
    for name in CRITERION:
        assert d_chi[name] >= d_t1[name] - 0.05, (name, d_chi, d_t1)
    assert min(d_chi.values()) > 0.75, d_chi
    qc = by_chi.qc
    assert qc["flag"] == "" and qc["mask_dice"] > 0.95 and qc["brain_coverage"] > 0.95
    assert qc["ncc"] > 0.7 and qc["log_jacobian_sd"] < 0.3
    assert {"mask_affine_seconds", "global_seconds", "local_seconds"} <= set(qc)
    # The composed forward field and the inverse chain exist (for save_transforms).
    assert by_chi.forward_field and by_chi.inverse


def test_register_chi_rejects_an_empty_map(tmp_path):
    with pytest.raises(ValueError, match="no brain"):
        reg.register(np.zeros((20, 20, 20), np.float32), np.eye(4), tmp_path,
                     contrast="Chimap")
