"""The QSM mask: magnitude foreground combined with phase quality, eroded.

A voxel is kept when the magnitude says "tissue" (:func:`brainiron.masks.foreground_mask` of
the root-sum-of-squares over echoes) and the multi-echo field fit is reliable (weighted RMS
residual at most ``residual_max_rad``); the largest connected component is kept, its holes
filled, then eroded by ``erosion_mm`` (background field removal is least accurate at the
edge). The consensus [1]_ recommends such phase-quality masking on top of a brain mask.

References
----------
.. [1] QSM Consensus Organization Committee (2024) Magn Reson Med 91:1834-1862.
   doi:10.1002/mrm.30006
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .. import masks

__all__ = ["qsm_mask"]


def _ball(radius_mm: float, voxel_size) -> np.ndarray:
    """Boolean ball structuring element of radius ``radius_mm`` (mm) on the voxel grid."""
    half = [int(np.floor(radius_mm / h)) for h in voxel_size]
    grids = np.ogrid[tuple(slice(-n, n + 1) for n in half)]
    r2 = sum((g * h) ** 2 for g, h in zip(grids, voxel_size, strict=True))
    return r2 <= radius_mm ** 2 + 1e-6


def qsm_mask(magnitude: np.ndarray, residual: np.ndarray | None, voxel_size,
             residual_max_rad: float = 0.5, erosion_mm: float = 1.0,
             brain_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Brain mask for QSM from magnitude and the echo-fit residual.

    Parameters
    ----------
    magnitude : (X, Y, Z) or (X, Y, Z, E) ndarray
        Magnitude (any units); echoes are combined by root sum of squares.
    residual : (X, Y, Z) ndarray or None
        Weighted RMS residual of the field fit (rad), or None (single echo: magnitude only).
    voxel_size : (3,) array_like
        Voxel size (mm).
    residual_max_rad : float
        Largest residual kept (rad).
    erosion_mm : float
        Erosion radius (mm); 0 for none.
    brain_mask : (X, Y, Z) bool ndarray, optional
        A brain mask to use instead of the magnitude foreground (e.g. from a brain
        extraction tool); phase quality and erosion still apply.

    Returns
    -------
    mask : (X, Y, Z) bool ndarray
        The QSM mask (may be empty).
    record : dict
        Voxel counts after each step (``magnitude_voxels``, ``phase_quality_voxels``,
        ``final_voxels``) and the parameters.
    """
    mag = np.asarray(magnitude, dtype=np.float32)
    rss = np.sqrt((mag ** 2).sum(-1)) if mag.ndim == 4 else mag
    if brain_mask is not None:
        base = np.asarray(brain_mask, dtype=bool)
    else:
        base = masks.foreground_mask(rss)
        base = np.zeros(rss.shape, bool) if base is None else base
    keep = base.copy()
    if residual is not None:
        keep &= np.asarray(residual) <= residual_max_rad
    n_quality = int(keep.sum())
    lab, n = ndimage.label(keep)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        keep = ndimage.binary_fill_holes(lab == sizes.argmax())
    if erosion_mm > 0 and keep.any():
        keep = ndimage.binary_erosion(keep, structure=_ball(erosion_mm, voxel_size))
    record = {"magnitude_voxels": int(base.sum()), "phase_quality_voxels": n_quality,
              "final_voxels": int(keep.sum()), "residual_max_rad": float(residual_max_rad),
              "erosion_mm": float(erosion_mm),
              "source": "given brain mask" if brain_mask is not None
              else "magnitude foreground (half Otsu, largest component, holes filled)"}
    return keep, record
