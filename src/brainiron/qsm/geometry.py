"""Image geometry for QSM: voxel sizes and the B0 direction in voxel coordinates.

B0 points along the scanner's z axis (world +z of the NIfTI affine, RAS+ "superior"), not
along the slice axis: on an oblique acquisition it has components along all three voxel axes,
and the dipole kernel must be built with that direction.

References
----------
.. [1] Kressler B, de Rochefort L, Liu T, Spincemaille P, Jiang Q, Wang Y (2010) Nonlinear
   regularization for per voxel estimation of magnetic susceptibility distributions from MRI
   field maps. IEEE Trans Med Imaging 29:273-281. doi:10.1109/TMI.2009.2023787
"""

from __future__ import annotations

import numpy as np

__all__ = ["b0_direction", "voxel_sizes"]


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths of an affine.

    Parameters
    ----------
    affine : (4, 4) array_like
        Voxel → world (mm).

    Returns
    -------
    (3,) ndarray
        Voxel sizes (mm) along the three voxel axes.
    """
    a = np.asarray(affine, dtype=float)[:3, :3]
    return np.sqrt((a ** 2).sum(axis=0))


def b0_direction(affine: np.ndarray, b0_world=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Unit B0 direction along the voxel axes (physical units: mm along each axis).

    Parameters
    ----------
    affine : (4, 4) array_like
        Voxel → world (mm). Its columns divided by the voxel sizes give the voxel axes'
        directions in world space.
    b0_world : (3,) array_like
        B0 direction in world coordinates (default the scanner z axis).

    Returns
    -------
    (3,) ndarray
        Unit vector ``d`` such that the voxel-axis directions weighted by ``d`` give B0:
        ``R @ d = b0`` with ``R = affine[:3, :3] / voxel_sizes``. For an axial, unrotated
        acquisition ``d = (0, 0, ±1)``.

    Raises
    ------
    ValueError
        A singular affine.
    """
    a = np.asarray(affine, dtype=float)[:3, :3]
    vox = voxel_sizes(affine)
    if np.any(vox == 0) or abs(np.linalg.det(a)) < 1e-12:
        raise ValueError("affine is singular: cannot find the B0 direction")
    rot = a / vox
    d = np.linalg.solve(rot, np.asarray(b0_world, dtype=float))
    return d / np.linalg.norm(d)
