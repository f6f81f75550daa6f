"""Warping through the composed forward field (brainiron.registration).

The register rule composes the forward chain once into a displacement field on the maps'
grid and warps labels, probabilities and the brain mask through it in memory. These tests
check that this gives what the chain of transform files gives, on an oblique grid and on a
second grid (LPS, anisotropic) that is not the registration image's.
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
    result = reg.register_to_template(data, img.affine, base / "work", settings)
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
    back = reg._apply(grid_shape, grid_affine, chain_labels.astype(np.float32), other_affine,
                      [str(inv)], "genericLabel")
    labels = atlas.template_labels()
    template_2mm = reg._apply(grid_shape, grid_affine, np.asarray(labels.data, np.float32),
                              labels.affine, [], "genericLabel")
    assert _agreement(np.rint(back), np.rint(template_2mm)) > 0.7
