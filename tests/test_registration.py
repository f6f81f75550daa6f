"""The registration package (brainiron.registration): warping, the atlas on the maps' grid, QC.

The register rule composes the forward chain once into a displacement field on the maps'
grid and warps labels, probabilities and the brain mask through it in memory. These tests
check that this gives what the chain of transform files gives, on an oblique grid and on a
second grid (LPS, anisotropic) that is not the registration image's; that
:func:`native_atlas` (labels, dentate, probabilities, box, brain mask) and the QC are right
with an identity transform; and the methods text.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainiron import atlas
from brainiron import registration as reg
from brainiron.phantom import generate_phantom

#: Atomic label indices of the template (left 1-9, right 11-19).
INDICES = [i for i in range(1, 20) if i != 10]


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    base = tmp_path_factory.mktemp("registration")
    generate_phantom(base / "bids", n_subjects=1, seed=3, voxel_size=(3.0, 3.0, 3.0),
                     orientation="oblique", with_megre=False, with_r2starmap=False,
                     with_chimap=False)
    img = nib.load(base / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    data = img.get_fdata(dtype=np.float32)
    # Few iterations: the accuracy of the registration is not under test here, only that the
    # composed field reproduces the chain (global SyN + the local stage's extra field).
    settings = reg.RegistrationSettings(reg_iterations=(20, 0, 0), local_iterations=(10,))
    result = reg.register(data, img.affine, base / "work", settings, contrast="T1w")
    return {"result": result, "shape": data.shape, "affine": img.affine, "base": base}


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of voxels labelled in either image that carry the same label in both."""
    either = (a > 0) | (b > 0)
    return float((a[either] == b[either]).mean())


def test_the_chain_has_a_local_stage_and_a_composed_field(registered):
    result = registered["result"]
    assert len(result.forward) >= 2  # local field + global composite
    assert result.forward_field and "local_box_shape" in result.qc
    field = nib.load(result.forward_field)
    assert field.shape[:3] == registered["shape"]
    assert np.allclose(field.affine, registered["affine"], atol=1e-4)


def test_labels_probabilities_and_mask_through_the_field_match_the_chain(registered):
    result, shape, affine = registered["result"], registered["shape"], registered["affine"]
    warp = reg.field_transform(result.forward_field)

    chain_labels = reg.warp_labels(shape, affine, result.forward)
    field_labels = reg.warp_labels(shape, affine, warp)
    assert (chain_labels > 0).sum() > 500
    assert _agreement(chain_labels, field_labels) > 0.995
    assert set(np.unique(field_labels)) == set(np.unique(chain_labels))

    p_chain, box_chain = reg.warp_probabilities(shape, affine, result.forward, INDICES,
                                                chain_labels)
    p_field, box_field = reg.warp_probabilities(shape, affine, warp, INDICES, chain_labels)
    assert box_chain == box_field
    diff = np.abs(p_chain.astype(int) - p_field.astype(int))
    assert diff.max() <= 3, diff.max()  # out of 255
    assert p_field.sum(axis=-1).max() > 200  # the probabilities are not empty

    m_chain = reg.warp_brain_mask(shape, affine, result.forward)
    m_field = reg.warp_brain_mask(shape, affine, warp)
    assert m_chain.sum() > 1000
    assert (m_chain != m_field).mean() < 0.001


def test_composed_on_another_grid_and_saved_as_xfm(registered, tmp_path):
    """Maps on an LPS, anisotropic grid (not the registration image's): compose there."""
    result, shape, affine = registered["result"], registered["shape"], registered["affine"]
    # An axis-aligned LPS grid covering the registration image's field of view.
    corners = np.array([[i, j, k, 1] for i in (0, shape[0]) for j in (0, shape[1])
                        for k in (0, shape[2])], float) @ affine.T
    lo, hi = corners[:, :3].min(0), corners[:, :3].max(0)
    voxel = np.array([2.5, 2.0, 3.5])
    other_shape = tuple(int(n) for n in np.ceil((hi - lo) / voxel))
    other_affine = np.diag([-voxel[0], -voxel[1], voxel[2], 1.0])
    other_affine[:3, 3] = [hi[0], hi[1], lo[2]]

    field_path = reg.compose_forward(result, other_shape, other_affine, tmp_path)
    warp = reg.field_transform(field_path)
    chain_labels = reg.warp_labels(other_shape, other_affine, result.forward)
    field_labels = reg.warp_labels(other_shape, other_affine, warp)
    assert (chain_labels > 0).sum() > 500
    assert _agreement(chain_labels, field_labels) > 0.995

    # save_transforms reuses the composed field; the saved file is a usable transform.
    fwd, inv = tmp_path / "fwd_xfm.nii.gz", tmp_path / "inv_xfm.nii.gz"
    reg.save_transforms(result, other_shape, other_affine, fwd, inv, tmp_path,
                        forward_field=field_path)
    saved = nib.load(fwd)
    assert saved.get_data_dtype() == np.float32 and saved.shape[:3] == other_shape
    from_file = reg.warp_labels(other_shape, other_affine, [str(fwd)])
    assert _agreement(chain_labels, from_file) > 0.995
    # The inverse pulls the subject's labels back onto the template (2 mm grid): they land
    # on the template's own labels.
    inv_img = nib.load(inv)
    grid_shape, grid_affine = inv_img.shape[:3], inv_img.affine
    back = reg.warp_image(grid_shape, grid_affine, chain_labels.astype(np.float32),
                          other_affine, [str(inv)], "genericLabel")
    labels = atlas.template_labels()
    template_2mm = reg.warp_image(grid_shape, grid_affine, np.asarray(labels.data, np.float32),
                                  labels.affine, [], "genericLabel")
    assert _agreement(np.rint(back), np.rint(template_2mm)) > 0.7


# --------------------------------------------------------------------------------------------
# The atlas on the maps' grid and the QC, with an identity transform (no registration)
# --------------------------------------------------------------------------------------------

#: A 3 mm grid over the template's field of view.
GRID_SHAPE = (65, 77, 65)
GRID_AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
GRID_AFFINE[:3, 3] = (-96.0, -132.0, -78.0)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    """A Registration whose chain is one identity affine."""
    import ants

    base = tmp_path_factory.mktemp("identity")
    path = str(base / "identity.mat")
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform",
                                                    dimension=3), path)
    return reg.Registration(forward=[path], inverse=[path],
                            settings=reg.RegistrationSettings(), qc={"seconds": 1.5})


def _dentate_contrast() -> tuple[np.ndarray, np.ndarray]:
    """χ-like values on the grid: bright in the typical dentate, dim elsewhere."""
    from brainiron.dentate import dentate_prior

    prior = dentate_prior()
    on_grid = reg.warp_image(GRID_SHAPE, GRID_AFFINE, np.asarray(prior.data, np.float32),
                             prior.affine, [], "genericLabel")
    rng = np.random.default_rng(0)
    values = 0.01 + 0.002 * rng.standard_normal(GRID_SHAPE)
    values[on_grid > 0] = 0.2
    return values.astype(np.float32), np.rint(on_grid).astype(np.int16)


def test_native_atlas_with_an_identity_transform(identity, tmp_path):
    values, prior = _dentate_contrast()
    native = reg.native_atlas(identity, GRID_SHAPE, GRID_AFFINE, values, "Chimap", tmp_path)
    atlas_labels = reg.warp_labels(GRID_SHAPE, GRID_AFFINE, [])
    # The atlas labels as the transform gives them, the dentate added where none is.
    assert native.labels.dtype == np.int16 and native.labels.shape == GRID_SHAPE
    taken = atlas_labels > 0
    assert np.array_equal(native.labels[taken], atlas_labels[taken])
    dn = {int(r.index) for r in atlas.region_table().itertuples()
          if r.region == "DN" and r.kind == "atomic"}
    assert native.dentate["L"]["found"] and native.dentate["R"]["found"], native.dentate
    assert set(np.unique(native.labels[~taken])) - {0} == dn
    assert (np.isin(native.labels, list(dn)) == (prior > 0)).mean() > 0.99
    # Probabilities: one volume per atomic label in the box; the dentate's are its label.
    indices = native.label_indices
    assert indices == [int(i) for i in native.lookup["index"]]
    assert native.probabilities.shape == (*[s.stop - s.start for s in native.box],
                                          len(indices))
    for index in dn:
        k = indices.index(index)
        expected = np.where(native.labels[native.box] == index, 255, 0)
        assert np.array_equal(native.probabilities[..., k], expected)
    putamen = indices.index(7)
    assert native.probabilities[..., putamen].max() > 200
    # The box's affine places it in the grid; the brain mask is the template's.
    start = [s.start for s in native.box]
    assert np.allclose(native.box_affine, reg.cropped_affine(GRID_AFFINE, native.box))
    assert np.allclose(native.box_affine[:3, 3], GRID_AFFINE[:3, 3] + 3.0 * np.array(start))
    brain = reg.warp_brain_mask(GRID_SHAPE, GRID_AFFINE, [])
    assert native.brain_mask.dtype == np.uint8 and (native.brain_mask == brain).mean() > 0.999
    # Counts, timing, the composed field.
    assert sum(native.label_voxels.values()) == int((native.labels > 0).sum())
    assert list(native.timing) == ["registration", "compose_field", "warp_labels", "dentate",
                                   "warp_probabilities_and_mask"]
    assert native.timing["registration"] == 1.5
    assert nib.load(native.forward_field).shape[:3] == GRID_SHAPE
    sidecar = reg.probseg_sidecar(native)
    assert sidecar["CropStartVoxel"] == start and sidecar["LabelIndices"] == indices
    assert reg.probseg_header().get_slope_inter() == pytest.approx((1.0 / 255.0, 0.0))

    record = reg.qc_record(identity, native, kind="Chimap", image_path="chi.nii.gz", threads=2)
    assert record["template_contrast"] == "T1w" and record["registration_image"] == "Chimap"
    assert list(record["settings"]) == list(reg.RECORDED_SETTINGS)
    assert record["settings"]["reg_iterations"] == [40, 10, 0]
    assert record["label_voxels"] == native.label_voxels and record["seconds"] == 1.5


def test_qc_limits_per_contrast(identity):
    tpl = atlas.load_reference("template")
    image = reg.warp_image(GRID_SHAPE, GRID_AFFINE, np.asarray(tpl.data, np.float32),
                           tpl.affine, [], "linear")
    good = reg.registration_qc(image, GRID_AFFINE, identity, "T1w")
    assert good["ncc"] > 0.99 and good["brain_coverage"] > 0.95 and good["flag"] == ""
    shifted = np.roll(image, 12, axis=1)  # 36 mm: the template no longer matches
    bad = reg.registration_qc(shifted, GRID_AFFINE, identity, "T1w")
    assert bad["ncc"] < 0.7 and "NCC" in bad["flag"] and "brain coverage" in bad["flag"]
    # The NCC is a T1w's limit only: a magnitude is flagged for coverage alone.
    other = reg.registration_qc(shifted, GRID_AFFINE, identity, "MEGRE")
    assert "NCC" not in other["flag"] and "brain coverage" in other["flag"]
    assert reg.qc_limits("T1w")["min_ncc"] == 0.7
    assert np.isnan(reg.qc_limits("MEGRE")["min_ncc"])
    # χ against the χ template (QC corpus): NCC checked, no log-Jacobian gate.
    assert reg.qc_limits("Chimap")["min_ncc"] == 0.5
    assert reg.qc_flag({"ncc": 0.6, "brain_coverage": 0.8, "log_jacobian_sd": 0.54},
                       "Chimap") == ""
    assert "NCC 0.42 < 0.5" in reg.qc_flag({"ncc": 0.42, "brain_coverage": 0.78,
                                             "log_jacobian_sd": 0.49}, "Chimap")
    assert reg.qc_flag({"ncc": 0.6, "brain_coverage": 0.8, "log_jacobian_sd": 0.54},
                       "T1w") == ("NCC 0.60 < 0.7; brain coverage 0.80 < 0.85; "
                                  "log-Jacobian SD 0.54 > 0.3")
    # Exclusion follows on_qc_failure.
    failed = reg.Registration([], [], reg.RegistrationSettings(), qc={"flag": "x"})
    assert "failed QC (x)" in reg.qc_failure(failed, reg.RegistrationSettings())
    assert reg.qc_failure(failed, reg.RegistrationSettings(on_qc_failure="flag")) is None


def test_describe():
    from brainiron import dentate

    settings = reg.RegistrationSettings(chi_local_stage=False, t1w_grid="same")
    text = reg.describe(settings, ["T1w", "MEGRE", "T1w"], chi_template=False)
    assert text.startswith("The MEGRE / T1w image of each subject was registered to the "
                           "MNI152NLin2009cAsym template [@fonov] with ANTs (ANTsPy, SyN, "
                           "metric CC / mattes) [@avants]")
    for key in ("[@fonov]", "[@avants]", "[@pauli]", "[@fischl]"):
        assert key in text
    assert "χ-contrast" not in text and "χ template" not in text and "rigid" not in text
    default = reg.describe(reg.RegistrationSettings(), ["T1w", "MEGRE"], chi_template=True)
    assert "first registered rigidly (ANTs, Mattes mutual information)" in default
    assert "aligned again on the nuclei by a local SyN" in default
    chi = reg.describe(settings, ["Chimap"], chi_template=True)
    assert "metric CC)" in chi and "χ-contrast version of the template" in chi
    assert "metric mattes)" in reg.describe(settings, ["Chimap"], chi_template=False)
    assert "The registration image" in reg.describe(settings, [], chi_template=False)
    assert dentate.describe().startswith("The dentate nucleus was segmented from the χ")
