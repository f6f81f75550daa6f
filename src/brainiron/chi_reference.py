"""χ references subtracted before the regional statistics (config ``chi_reference``).

χ from QSM is relative: background-field removal leaves an unknown offset per subject, so
regional values are compared after subtracting a reference region's mean. ``wholebrain``
uses the mean over the warped template brain mask; ``csf`` the mean over *deep* CSF, i.e.
the ventricles: voxels at least :data:`CSF_MIN_FRACTION` covered by the template's CSF class
carried onto the subject's grid (:func:`brainiron.registration.native_tissue_mask`) that lie
inside the χ map's own support and at least ``csf_reference_depth_mm`` from its edge. The
depth keeps out sulcal CSF (at the surface of the brain, thin, partial-volumed with cortex
and veins) and the edge of the QSM mask, where background-field removal and mask erosion
leave the largest errors.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["CSF_MIN_FRACTION", "MIN_CSF_REFERENCE_VOXELS", "chi_csf_reference",
           "chi_wholebrain_reference", "voxel_sizes_mm"]

#: Fewest deep-CSF voxels the CSF reference accepts: with a per-voxel spread of 0.02 ppm
#: (twice the phantom's χ noise) 20 voxels give a standard error of the mean of 0.0045 ppm
#: (~4 % of the SN's ~0.12 ppm), and at 3-4 mm voxels they are 0.5-1.3 mL, a fraction of the
#: lateral ventricles (~15-30 mL in adults); fewer means the registration put next to no CSF
#: deep in the map, and the reference would be a few misplaced voxels.
MIN_CSF_REFERENCE_VOXELS = 20

#: Least fraction of a subject voxel the template's CSF class must cover to be a CSF voxel of
#: the reference: the ventricles' partial-volume border (caudate, thalamus, periventricular
#: white matter, 0.05-0.1 ppm apart from CSF) stays out. On the basic phantom at 4 mm (depth
#: 10 mm) 0.5 kept 924 voxels of which 85 % were truly CSF; 0.9 kept 93, all truly CSF.
CSF_MIN_FRACTION = 0.9


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) along the three array axes of a voxel → world (mm) matrix."""
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(0))


def chi_wholebrain_reference(chi: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, float]:
    """χ referenced to the mean of the whole brain.

    Parameters
    ----------
    chi : ndarray
        χ map (ppm).
    brain : ndarray of bool
        Brain mask on the same grid (brainiron's warped template brain mask).

    Returns
    -------
    referenced : ndarray, float32
        ``chi`` minus the reference (ppm) where it has a value; zeros and NaN (outside the
        map's mask) stay as they are, so the statistics still leave them out.
    reference : float
        Mean χ of the brain's voxels with a finite, non-zero value (ppm).
    """
    chi = np.asarray(chi, dtype=np.float32)
    support = np.isfinite(chi) & (chi != 0)
    reference = float(chi[brain & support].mean())
    return np.where(support, chi - np.float32(reference), chi).astype(np.float32), reference


def chi_csf_reference(chi: np.ndarray, csf: np.ndarray, voxel_size_mm,
                      depth_mm: float = 10.0) -> tuple[np.ndarray, float, int]:
    """χ referenced to the mean of deep (ventricular) CSF.

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        χ map (ppm). Its support is where it is finite and non-zero (QSM maps are 0 or NaN
        outside their mask).
    csf : (X, Y, Z) ndarray of bool
        CSF voxels on the same grid.
    voxel_size_mm : sequence of 3 float
        Voxel sizes (mm) along the array axes (:func:`voxel_sizes_mm` of the affine).
    depth_mm : float
        Least distance (mm) of a reference voxel from the edge of the support (a voxel
        outside the support or outside the array); 0 keeps every CSF voxel of the support.

    Returns
    -------
    referenced : ndarray, float32
        ``chi`` minus the reference inside the support (ppm); 0 and NaN stay as they are.
    reference : float
        Mean χ of the deep CSF voxels (ppm).
    n_voxels : int
        How many voxels that mean used.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_CSF_REFERENCE_VOXELS` voxels qualify (the message gives the
        count).
    """
    chi = np.asarray(chi, dtype=np.float32)
    support = np.isfinite(chi) & (chi != 0)
    # Pad with "outside" so that the array's border counts as the support's edge too.
    depth = ndimage.distance_transform_edt(np.pad(support, 1),
                                           sampling=[float(s) for s in voxel_size_mm])
    deep = np.asarray(csf, bool) & support & (depth[1:-1, 1:-1, 1:-1] >= depth_mm)
    n_voxels = int(deep.sum())
    if n_voxels < MIN_CSF_REFERENCE_VOXELS:
        raise ValueError(
            f"only {n_voxels} CSF voxels lie inside the chi map's support and at least "
            f"{depth_mm:g} mm from its edge; the CSF reference needs at least "
            f"{MIN_CSF_REFERENCE_VOXELS} (lower csf_reference_depth_mm, or use "
            "chi_reference: wholebrain)")
    reference = float(chi[deep].mean(dtype=np.float64))
    return np.where(support, chi - np.float32(reference), chi), reference, n_voxels
