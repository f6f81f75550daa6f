"""Dentate nucleus from image contrast, inside an atlas-defined search region.

No atlas shipped offline has a usable MNI label of the dentate nucleus, so brainiron finds it
the way QSM studies do: the dentate is the strongly paramagnetic (high χ, high R2*) structure
inside the cerebellar white matter. Per hemisphere:

1. **Search region** (template space): brain voxels with no SUIT lobule label and no other
   brainiron label, inside an ellipsoid (radii 12 × 14 × 10 mm) around (±14, −56, −33) mm
   MNI; warped to the subject with its registration (:func:`search_labels`).
2. **Threshold**: Otsu's threshold of the map's values inside the search region (χ, or R2*
   when there is no χ map).
   When more than :data:`MAX_DENTATE_MM3` lie above it, the threshold has separated tissue
   from missing or CSF-like values instead, and Otsu's threshold of the values above it is
   taken.
3. **Component**: the largest 26-connected component above the threshold, closed by one
   voxel and hole-filled, restricted to the search region.
4. **Check**: the component must be at least ``min_volume_mm3`` and its median must exceed
   the rest of the search region's median by ``min_contrast`` (in map units); otherwise the
   dentate is reported as not found (empty label) rather than guessed.

References
----------
.. [1] Diedrichsen J et al. (2009) A probabilistic MR atlas of the human cerebellum.
   NeuroImage 46:39-46 (SUIT lobules).
.. [2] Otsu N (1979) A threshold selection method from gray-level histograms. IEEE Trans
   Syst Man Cybern 9:62-66.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from . import atlas

__all__ = ["DENTATE_CENTRES_MM", "DENTATE_PRIOR_SEMI_AXES_MM", "MAX_DENTATE_MM3",
           "dentate_prior", "describe",
           "search_labels", "segment_dentate"]

#: Centre of the search region per hemisphere, MNI152NLin2009cAsym mm.
DENTATE_CENTRES_MM = {"L": (-14.0, -56.0, -33.0), "R": (14.0, -56.0, -33.0)}
_RADII_MM = np.array([12.0, 14.0, 10.0])
#: Semi-axes (x, y, z; mm) of the typical dentate used as a prior where an image needs one
#: (the χ-contrast template): an ellipsoid of ~840 mm³, the size of an adult dentate.
DENTATE_PRIOR_SEMI_AXES_MM = np.array([5.0, 8.0, 5.0])
#: Smallest accepted component per contrast, and the contrast it must show (map units).
MIN_CONTRAST = {"Chimap": 0.02, "R2starmap": 2.0}
#: More voxels above the threshold than this (mm³; an adult dentate is ~0.8-1.5 cm³, the
#: search region ~5 cm³ per side) and Otsu is applied again to the upper class.
MAX_DENTATE_MM3 = 3000.0


def _dn_indices() -> dict[str, int]:
    table = atlas.region_table()
    rows = table[(table["region"] == "DN") & (table["kind"] == "atomic")]
    return {r.hemisphere: int(r.index) for r in rows.itertuples()}


@functools.cache
def search_labels() -> atlas.ReferenceImage:
    """Template-space search regions, labelled with the DN indices of the region table."""
    tpl = atlas.load_reference("template")
    suit = atlas.load_reference("SUIT")
    taken = atlas.template_labels().data > 0
    ijk = np.indices(tpl.data.shape, sparse=True)
    out = np.zeros(tpl.data.shape, np.int16)
    allowed = (tpl.data > 0) & (suit.data == 0) & ~taken
    for hemi, index in _dn_indices().items():
        centre = np.linalg.solve(tpl.affine, [*DENTATE_CENTRES_MM[hemi], 1.0])[:3]
        vox = np.sqrt((tpl.affine[:3, :3] ** 2).sum(0))
        inside = sum(((ijk[k] - centre[k]) * vox[k] / _RADII_MM[k]) ** 2 for k in range(3)) <= 1
        out[inside & allowed] = index
    out.setflags(write=False)
    return atlas.ReferenceImage(out, tpl.affine, None, tpl.path)


@functools.cache
def dentate_prior() -> atlas.ReferenceImage:
    """Typical dentate nuclei in template space (DN indices), for images that need one.

    An ellipsoid of :data:`DENTATE_PRIOR_SEMI_AXES_MM` around :data:`DENTATE_CENTRES_MM`,
    restricted to the search region's voxels (brain, no SUIT lobule, no other label). Used by
    :func:`brainiron.registration.chi_template`, never as a segmentation: the dentate in the
    tables always comes from the subject's own contrast (:func:`segment_dentate`).
    """
    search = search_labels()
    ijk = np.indices(search.data.shape, sparse=True)
    vox = np.sqrt((search.affine[:3, :3] ** 2).sum(0))
    out = np.zeros(search.data.shape, np.int16)
    for hemi, index in _dn_indices().items():
        centre = np.linalg.solve(search.affine, [*DENTATE_CENTRES_MM[hemi], 1.0])[:3]
        inside = sum(((ijk[k] - centre[k]) * vox[k] / DENTATE_PRIOR_SEMI_AXES_MM[k]) ** 2
                     for k in range(3)) <= 1
        out[inside & (search.data == index)] = index
    out.setflags(write=False)
    return atlas.ReferenceImage(out, search.affine, None, search.path)


def segment_dentate(values: np.ndarray, search: np.ndarray, voxel_volume_mm3: float,
                    contrast: str = "Chimap", min_volume_mm3: float = 150.0
                    ) -> tuple[np.ndarray, dict]:
    """Segment the dentate nuclei inside native-space search regions.

    Parameters
    ----------
    values : (X, Y, Z) ndarray
        χ (ppm) or R2* (1/s) on the subject's grid; NaN or 0 = missing.
    search : (X, Y, Z) integer ndarray
        Search regions on the same grid, labelled with the DN indices (see
        :func:`search_labels`, warped to the subject).
    voxel_volume_mm3 : float
        Volume of one voxel (mm³).
    contrast : {"Chimap", "R2starmap"}
        Which map ``values`` is (sets the minimum contrast).
    min_volume_mm3 : float
        Smallest plausible dentate (mm³).

    Returns
    -------
    labels : (X, Y, Z) int16 ndarray
        DN indices where the dentate was found, 0 elsewhere.
    info : dict
        Per hemisphere: ``found``, ``threshold``, ``volume_mm3``, ``contrast`` (median inside
        minus median of the rest of the search region, map units), ``reason`` when not found.
    """
    from skimage.filters import threshold_otsu

    out = np.zeros(search.shape, np.int16)
    info: dict[str, dict] = {}
    structure = ndimage.generate_binary_structure(3, 3)
    for hemi, index in _dn_indices().items():
        region = search == index
        v = values[region]
        ok = np.isfinite(v) & (v != 0)
        record = {"found": False, "method": f"Otsu threshold of {contrast} in the atlas search "
                  "region, largest connected component", "search_voxels": int(region.sum())}
        info[hemi] = record
        if ok.sum() < 20:
            record["reason"] = "search region outside the map's coverage"
            continue
        threshold = float(threshold_otsu(v[ok]))
        above = v[ok][v[ok] > threshold]
        if above.size * voxel_volume_mm3 > MAX_DENTATE_MM3 and above.size >= 20:
            # More above than any dentate: Otsu split tissue from missing or CSF-like values
            # (R2* fits near 0 outside the brain), not the dentate from white matter.
            threshold = float(threshold_otsu(above))
            record["rethresholded"] = True
        candidate = np.zeros_like(region)
        candidate[region] = ok & (v > threshold)
        lab, n = ndimage.label(candidate, structure)
        if n == 0:
            record["reason"] = "nothing above the threshold"
            continue
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        component = lab == sizes.argmax()
        component = ndimage.binary_fill_holes(ndimage.binary_closing(component, structure))
        component &= region
        inside = values[component]
        rest = values[region & ~component]
        rest = rest[np.isfinite(rest) & (rest != 0)]
        contrast_value = float(np.median(inside) - np.median(rest)) if rest.size else 0.0
        volume = float(component.sum() * voxel_volume_mm3)
        record.update(threshold=round(threshold, 5), volume_mm3=round(volume, 1),
                      contrast=round(contrast_value, 5))
        if volume < min_volume_mm3:
            record["reason"] = f"largest component only {volume:.0f} mm3"
            continue
        if contrast_value < MIN_CONTRAST.get(contrast, 0.0):
            record["reason"] = f"contrast {contrast_value:.3g} below {MIN_CONTRAST[contrast]}"
            continue
        record["found"] = True
        out[component] = index
    return out, info


def describe() -> str:
    """Methods text of the dentate's segmentation (plain text).

    Returns
    -------
    str
    """
    return ("The dentate nucleus was segmented from the χ (else R2*) map inside an "
            "atlas-derived search region in the cerebellar white matter (Otsu threshold, "
            "largest connected component).")
