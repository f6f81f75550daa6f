"""Referencing χ: the zero of a QSM map is arbitrary (D(0) = 0), so it is set by a region.

The consensus [1]_ asks that the reference be stated and that whole brain be offered as a
common reference; CSF (e.g. the lateral ventricles) is the other usual choice.

References
----------
.. [1] QSM Consensus Organization Committee (2024) Magn Reson Med 91:1834-1862.
   doi:10.1002/mrm.30006
"""

from __future__ import annotations

import numpy as np

__all__ = ["reference_chi"]


def reference_chi(chi: np.ndarray, mask: np.ndarray, method: str = "whole_brain",
                  csf_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Subtract the mean χ of the reference region.

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        χ (ppm), unreferenced.
    mask : (X, Y, Z) bool ndarray
        The QSM mask; χ is 0 outside it on return.
    method : {"whole_brain", "csf"}
        Reference region: the whole mask, or ``csf_mask`` ∩ mask.
    csf_mask : (X, Y, Z) bool ndarray, optional
        CSF voxels (required for ``method="csf"``).

    Returns
    -------
    chi : (X, Y, Z) float32 ndarray
        χ (ppm) relative to the reference region's mean.
    record : dict
        ``reference`` (method), ``voxels`` (of the region), ``subtracted_ppm``.

    Raises
    ------
    ValueError
        Unknown method, a CSF reference without a CSF mask, or an empty region.
    """
    m = np.asarray(mask, dtype=bool)
    if method == "whole_brain":
        region = m
    elif method == "csf":
        if csf_mask is None:
            raise ValueError("reference 'csf' needs a CSF mask (csf_mask)")
        region = m & np.asarray(csf_mask, dtype=bool)
    else:
        raise ValueError(f"unknown reference {method!r} (whole_brain or csf)")
    if not region.any():
        raise ValueError(f"reference region {method!r} is empty inside the QSM mask")
    value = float(np.mean(chi[region], dtype=np.float64))
    out = ((np.asarray(chi, np.float32) - np.float32(value)) * m).astype(np.float32)
    return out, {"reference": method, "voxels": int(region.sum()), "subtracted_ppm": value}
