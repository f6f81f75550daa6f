"""Images between nibabel (RAS+ world) and ANTs (LPS physical space), and their grids.

:func:`to_ants` / :func:`from_ants` convert without temporary files;
:func:`resample_antialiased` resamples to an isotropic grid after a Gaussian blur that
matches the new voxel's point-spread function.
"""

from __future__ import annotations

import numpy as np

__all__ = ["from_ants", "on_grid", "resample_antialiased", "to_ants"]

_LPS = np.diag([-1.0, -1.0, 1.0])
#: FWHM (mm) = 2.3548 σ for a Gaussian.
FWHM_PER_SIGMA = 2.3548


def to_ants(data: np.ndarray, affine: np.ndarray):
    """A NumPy array with a RAS+ voxel-to-world affine as an ANTs image (LPS physical space).

    Parameters
    ----------
    data : (X, Y, Z) ndarray
        Voxel values (stored as float32).
    affine : (4, 4) ndarray
        Voxel → world (RAS, mm).

    Returns
    -------
    ants.ANTsImage
    """
    import ants

    affine = np.asarray(affine, dtype=float)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _LPS @ affine[:3, :3] / spacing
    origin = _LPS @ affine[:3, 3]
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32),
                           origin=tuple(origin), spacing=tuple(spacing),
                           direction=direction)


def from_ants(img) -> tuple[np.ndarray, np.ndarray]:
    """An ANTs image as ``(data, RAS+ affine)``.

    Parameters
    ----------
    img : ants.ANTsImage

    Returns
    -------
    data : ndarray
    affine : (4, 4) ndarray
        Voxel → world (RAS, mm).
    """
    spacing = np.asarray(img.spacing, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = _LPS @ np.asarray(img.direction, dtype=float) * spacing
    affine[:3, 3] = _LPS @ np.asarray(img.origin, dtype=float)
    return img.numpy(), affine


def resample_antialiased(img, spacing_mm: float):
    """Anti-aliased linear resampling to an isotropic grid (Gaussian FWHM² = new² − old²).

    Parameters
    ----------
    img : ants.ANTsImage
    spacing_mm : float
        Voxel size of the new grid (mm); no blur when it is not coarser than ``img``'s.

    Returns
    -------
    ants.ANTsImage
    """
    import ants

    old = float(np.mean(img.spacing))
    if spacing_mm > old + 1e-6:
        sigma = np.sqrt(spacing_mm ** 2 - old ** 2) / FWHM_PER_SIGMA
        img = ants.smooth_image(img, sigma, sigma_in_physical_coordinates=True)
    return ants.resample_image(img, (spacing_mm,) * 3, use_voxels=False, interp_type=0)


def on_grid(img, spacing_mm: float):
    """``img`` itself when ``spacing_mm`` is not coarser, else :func:`resample_antialiased`.

    Parameters
    ----------
    img : ants.ANTsImage
    spacing_mm : float
        Voxel size (mm) of the registration grid.

    Returns
    -------
    ants.ANTsImage
    """
    if spacing_mm <= float(np.mean(img.spacing)) + 1e-6:
        return img
    return resample_antialiased(img, spacing_mm)
