"""Masks shared by the stages: an image's foreground, a χ map's brain, the template's brain.

* :func:`foreground_mask` — the head (or brain) of a magnitude, T1w or R2* image: the
  largest connected component above half Otsu's threshold, holes filled. Used by the R2* fit
  (:mod:`brainiron.relaxometry`) and to restrict the registration metric
  (:mod:`brainiron.registration`).
* :func:`chi_brain_mask` — the brain of a χ map: QSM pipelines set χ to 0 (or NaN) outside
  the mask they reconstructed in, so that mask is recovered exactly.
* :func:`template_brain_mask` — the brain of the (brain-extracted) MNI152NLin2009cAsym T1
  template.

References
----------
.. [1] Otsu N (1979) A threshold selection method from gray-level histograms. IEEE Trans
   Syst Man Cybern 9:62-66.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import atlas

__all__ = ["chi_brain_mask", "foreground_mask", "template_brain_mask"]


def _largest_component_filled(inside: np.ndarray) -> np.ndarray | None:
    """The largest connected component of a boolean image, holes filled (None if empty)."""
    lab, n = ndimage.label(inside)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(lab == sizes.argmax())


def foreground_mask(data: np.ndarray) -> np.ndarray | None:
    """Head (or brain) of an image: largest component above half Otsu, holes filled.

    Parameters
    ----------
    data : (X, Y, Z) ndarray
        Magnitude, T1w or R2* image (any units); NaN and ±inf count as 0.

    Returns
    -------
    (X, Y, Z) bool ndarray or None
        ``None`` when the image has fewer than 10 nonzero voxels or nothing above the
        threshold (half of Otsu's threshold of the nonzero ``|data|``).
    """
    from skimage.filters import threshold_otsu

    finite = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0,
                           neginf=0.0)
    values = np.abs(finite[finite != 0])
    if values.size < 10:
        return None
    return _largest_component_filled(np.abs(finite) > threshold_otsu(values) * 0.5)


def chi_brain_mask(chi: np.ndarray) -> np.ndarray:
    """Brain mask of a χ map: its nonzero finite voxels, largest component, holes filled.

    QSM pipelines set χ to 0 (or NaN) outside the brain mask they reconstructed in, so that
    mask is recovered exactly.

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        χ map (ppm).

    Returns
    -------
    (X, Y, Z) bool ndarray
        Empty when the map has no nonzero finite voxel.
    """
    chi = np.asarray(chi)
    inside = np.isfinite(chi) & (chi != 0)
    mask = _largest_component_filled(inside)
    return inside if mask is None else mask


def template_brain_mask() -> tuple[np.ndarray, np.ndarray]:
    """The brain of the MNI152NLin2009cAsym T1 template (its nonzero voxels).

    Returns
    -------
    mask : (193, 229, 193) bool ndarray
        True inside the brain-extracted template.
    affine : (4, 4) ndarray
        Voxel → MNI152NLin2009cAsym world (mm, RAS).
    """
    tpl = atlas.load_reference("template")
    return np.asarray(tpl.data) > 0, tpl.affine
