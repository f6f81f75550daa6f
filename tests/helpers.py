"""Helpers shared by test modules (``tests/`` is on ``sys.path`` under pytest)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Offset of a right-hemisphere label from its left one (brainiron's atomic labels).
RIGHT_OFFSET = 10


def composite_dice(est: np.ndarray, truth: np.ndarray, members: Sequence[int]) -> float:
    """Dice of a composite region, left and right hemisphere averaged.

    Parameters
    ----------
    est, truth : ndarray
        Integer label images on the same grid.
    members : sequence of int
        The composite's left atomic labels (the right ones are ``+ 10``).

    Returns
    -------
    float
        The mean of the left and the right Dice (0 for a hemisphere empty in both images).
    """
    out = []
    for offset in (0, RIGHT_OFFSET):
        ids = [m + offset for m in members]
        a, b = np.isin(est, ids), np.isin(truth, ids)
        out.append(2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return float(np.mean(out))


def rotation(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation matrix of x, y, z angles in degrees (applied x first)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def move_to_own_grid(data: np.ndarray, affine: np.ndarray, angles_deg: Sequence[float],
                     shift_mm: Sequence[float], voxel_mm: float, margin_mm: float = 10.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image resampled onto its own sagittal grid after a rigid head motion.

    Written independently of brainiron's registration code (SciPy only): the motion ``M``
    maps the original world onto the new one (``x_new = M @ x_old``), the grid's axes are
    anterior→posterior, superior→inferior, left→right (stored like a sagittal MPRAGE) and its
    field of view covers the moved image plus ``margin_mm``.

    Returns
    -------
    data : ndarray
        On the new grid (linear interpolation, 0 outside).
    affine : (4, 4) ndarray
        The new grid's voxel → world matrix.
    motion : (4, 4) ndarray
        ``M`` (world mm).
    """
    from scipy import ndimage

    motion = np.eye(4)
    motion[:3, :3] = rotation(angles_deg)
    motion[:3, 3] = shift_mm
    linear = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]) * voxel_mm
    shape = np.asarray(data.shape)
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0]) for j in (0, shape[1])
                        for k in (0, shape[2])]).T
    world = (motion @ affine @ corners)[:3]
    lo, hi = world.min(1) - margin_mm, world.max(1) + margin_mm
    box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                    for z in (lo[2], hi[2])]).T
    vox = np.linalg.solve(linear, box)
    vlo = vox.min(1)
    new_shape = tuple(int(n) for n in np.ceil(vox.max(1) - vlo) + 1)
    new_affine = np.eye(4)
    new_affine[:3, :3] = linear
    new_affine[:3, 3] = linear @ vlo
    ijk = np.indices(new_shape).reshape(3, -1)
    points = np.linalg.inv(affine) @ np.linalg.inv(motion) @ new_affine @ np.vstack(
        [ijk, np.ones(ijk.shape[1])])
    out = ndimage.map_coordinates(np.asarray(data, np.float32), points[:3], order=1, cval=0.0)
    return out.reshape(new_shape), new_affine, motion


def move_t1w(subject_anat, angles_deg=(4.0, -3.0, 5.0), shift_mm=(3.0, -4.0, 5.0),
             voxel_mm: float | None = None) -> np.ndarray:
    """Replace a phantom subject's T1w by itself on its own grid after a head motion.

    ``voxel_mm`` defaults to the T1w's own voxel size (the content's resolution). Returns the
    motion ``M`` (``x_T1w = M @ x_maps``, world mm).
    """
    from pathlib import Path

    import nibabel as nib

    path = next(Path(subject_anat).glob("*_T1w.nii.gz"))
    img = nib.load(path)
    voxel = voxel_mm or float(np.mean(img.header.get_zooms()[:3]))
    data, affine, motion = move_to_own_grid(img.get_fdata(dtype=np.float32), img.affine,
                                            angles_deg, shift_mm, voxel)
    nib.save(nib.Nifti1Image(data, affine), path)
    return motion
