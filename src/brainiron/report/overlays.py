"""Nuclei overlays: native-space labels as coloured contours on a background image.

:func:`subject_overlays` draws the nuclei on the registration image, a χ map or an R2* map, in
sagittal, coronal and axial views through the substantia nigra and through the globus
pallidus (:func:`nuclei_cut_coords`), with a grey-scale window that keeps the iron-rich nuclei
unsaturated (:func:`display_window`).

Images in any orientation (RAS, LPS, oblique) are shown in world (scanner) coordinates, in
nilearn's neurological convention (the subject's left on the left of coronal and axial
views); oblique grids are resampled for display only (labels by nearest neighbour).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import atlas
from ..io import atomic_path, read_tsv

__all__ = [
    "REGION_COLOURS",
    "colours_for",
    "display_window",
    "nuclei_cut_coords",
    "subject_overlays",
]

#: Contour colour of each region (both hemispheres), chosen to stand out on grey scale.
REGION_COLOURS = {
    "SNc_PBP_VTA": "#ff2d2d",
    "SNr": "#ff9a1f",
    "RN": "#ff5cf0",
    "STN": "#fff13a",
    "GPe": "#3ddc4a",
    "GPi": "#27e8f5",
    "Pu": "#4f8dff",
    "Ca": "#b98cff",
    "Thal": "#f5f5f5",
    "DN": "#c9a26b",
}
_EXTRA_COLOURS = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462")

#: Atomic regions whose centroid sets each row's cut (brainiron's default labels).
_CUT_REGIONS = {"SN": ("SNc_PBP_VTA", "SNr"), "GP": ("GPe", "GPi")}


def _as_img(img) -> nib.spatialimages.SpatialImage:
    """A 3D nibabel image from a path or an image (trailing singleton dimensions dropped)."""
    if isinstance(img, str | os.PathLike):
        img = nib.load(img)
    if len(img.shape) > 3:
        if any(s != 1 for s in img.shape[3:]):
            raise ValueError(f"expected a 3D image, got shape {img.shape}")
        img = nib.Nifti1Image(np.asarray(img.dataobj).reshape(img.shape[:3]), img.affine)
    return img


#: What names the labels: index → name, an ``index, name`` table, its path, or ``None``.
Lookup = Mapping[int, str] | pd.DataFrame | str | os.PathLike | None

_HEMI_SUFFIX = re.compile(r"_(L|R|LH|RH|left|right)$")


def _label_names(lookup) -> dict[int, tuple[str, str]]:
    """Label index → (region, hemisphere ``L`` / ``R`` / ``""``).

    From ``lookup`` (mapping, ``index, name`` table or the path of one; names like
    ``SNr_L``), else brainiron's region table.
    """
    if isinstance(lookup, str | os.PathLike):
        lookup = read_tsv(lookup)
    if lookup is None:
        table = atlas.region_table()
        atomic = table[table["kind"] == "atomic"]
        return {int(i): (str(r), str(h)) for i, r, h in
                zip(atomic["index"], atomic["region"], atomic["hemisphere"], strict=True)}
    if isinstance(lookup, pd.DataFrame):
        lookup = dict(zip(lookup["index"].astype(int), lookup["name"].astype(str), strict=True))
    out = {}
    for index, name in lookup.items():
        match = _HEMI_SUFFIX.search(str(name))
        out[int(index)] = ((str(name)[:match.start()], match.group(1)[0].upper()) if match
                           else (str(name), ""))
    return out


def _label_data(labels_img) -> np.ndarray:
    return np.rint(np.nan_to_num(np.asarray(labels_img.dataobj, dtype=np.float32))).astype(
        np.int32)


def nuclei_cut_coords(labels_img, lookup: Lookup = None) -> dict[str, tuple[float, float, float]]:
    """World coordinates (mm) of the cuts through the substantia nigra and the pallidum.

    Parameters
    ----------
    labels_img : nibabel image or path
        Atomic labels on any grid (brainiron's ``*_dseg.nii.gz``).
    lookup : mapping, DataFrame or path, optional
        Label index → name (``SNr_L`` ...), or the ``index, name`` table (``_dseg.tsv``);
        default brainiron's region table.

    Returns
    -------
    dict
        ``{"SN": (x, y, z), "GP": (x, y, z)}`` in the image's world coordinates (mm): ``y``
        and ``z`` from the centroid of both hemispheres' nucleus, ``x`` from the left one
        (so that the sagittal view cuts through a nucleus, not the midline). A nucleus with
        no voxel falls back to the centroid of all labels, then to the image centre.
    """
    names = _label_names(lookup)
    img = _as_img(labels_img)
    data = _label_data(img)
    affine = img.affine

    def centroid(mask: np.ndarray) -> np.ndarray | None:
        ijk = np.argwhere(mask)
        if not len(ijk):
            return None
        return (affine @ np.r_[ijk.mean(axis=0), 1.0])[:3]

    fallback = centroid(data > 0)
    if fallback is None:
        fallback = (affine @ np.r_[(np.array(data.shape) - 1) / 2.0, 1.0])[:3]
    out = {}
    for name, parts in _CUT_REGIONS.items():
        idx = [i for i, (region, _) in names.items() if region in parts]
        both = centroid(np.isin(data, idx))
        left = centroid(np.isin(data, [i for i in idx if names[i][1] == "L"]))
        xyz = fallback.copy() if both is None else both.copy()
        if left is not None:
            xyz[0] = left[0]
        out[name] = tuple(float(round(v, 1)) for v in xyz)
    return out


# --------------------------------------------------------------------------------------------
# Overlays
# --------------------------------------------------------------------------------------------

def _world_box(img, mask: np.ndarray, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """World (mm) bounding box of a mask's voxels, widened by ``margin_mm``."""
    ijk = np.argwhere(mask)
    lo, hi = ijk.min(0), ijk.max(0)
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                        for c in (lo[2], hi[2])])
    world = (img.affine @ corners.T)[:3].T
    return world.min(0) - margin_mm, world.max(0) + margin_mm


def _crop_box(img, lo: np.ndarray, hi: np.ndarray):
    """Crop an image (any affine) to the voxels covering the world box [lo, hi] (mm)."""
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                        for c in (lo[2], hi[2])])
    ijk = np.linalg.solve(img.affine, corners.T)[:3].T
    start = np.clip(np.floor(ijk.min(0)).astype(int), 0, None)
    stop = np.minimum(np.ceil(ijk.max(0)).astype(int) + 1, img.shape[:3])
    if np.any(stop - start < 2):
        return img
    return img.slicer[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]


def display_window(bg, lab_img) -> tuple[float, float]:
    """Grey-scale window of an overlay's background.

    Parameters
    ----------
    bg : nibabel image
        The background (any units: χ in ppm, R2* in 1/s, T1w in arbitrary units).
    lab_img : nibabel image
        Integer labels in the same world space, on any grid.

    Returns
    -------
    (float, float)
        ``(vmin, vmax)`` in the background's units: the 1st to 99.5th percentile of its
        finite, non-zero voxels, ``vmax`` widened to the 99.5th percentile inside the labels
        (iron-rich nuclei are the brightest voxels of χ and R2* maps: they should not
        saturate); ``(0, 1)`` for an empty background.
    """
    data = np.asarray(bg.dataobj)
    values = data[np.isfinite(data) & (data != 0)]
    if not values.size:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1.0, 99.5])
    ijk = np.argwhere(np.asarray(lab_img.dataobj) > 0)
    if len(ijk):
        world = lab_img.affine @ np.c_[ijk, np.ones(len(ijk))].T
        vox = np.rint(np.linalg.solve(bg.affine, world)[:3].T).astype(int)
        inside = np.all((vox >= 0) & (vox < np.array(data.shape[:3])), axis=1)
        sampled = data[tuple(vox[inside].T)]
        sampled = sampled[np.isfinite(sampled) & (sampled != 0)]
        if sampled.size:
            hi = max(hi, float(np.percentile(sampled, 99.5)))
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _display_images(background_img, labels_img, margin_mm: float | None):
    """Background (float32, NaN → 0) and labels (int16) reordered to RAS for display, cropped
    to the labelled box plus ``margin_mm``, and the display window of the stored voxels."""
    from nilearn.image import reorder_img

    bg = _as_img(background_img)
    bg = nib.Nifti1Image(np.nan_to_num(np.asarray(bg.dataobj, dtype=np.float32)), bg.affine)
    lab_img = _as_img(labels_img)
    lab_img = nib.Nifti1Image(_label_data(lab_img).astype(np.int16), lab_img.affine)
    window = display_window(bg, lab_img)  # on the voxels as stored
    crop = margin_mm is not None and np.asarray(lab_img.dataobj).any()
    if crop:  # crop before reordering: an oblique grid is resampled, and that costs
        lo, hi = _world_box(lab_img, np.asarray(lab_img.dataobj) > 0, margin_mm)
        bg, lab_img = _crop_box(bg, lo, hi), _crop_box(lab_img, lo, hi)
    bg = reorder_img(bg, resample="linear")
    lab_img = reorder_img(lab_img, resample="nearest")
    if crop and np.asarray(lab_img.dataobj).any():  # again: an oblique box overfills
        lo, hi = _world_box(lab_img, np.asarray(lab_img.dataobj) > 0, margin_mm)
        bg, lab_img = _crop_box(bg, lo, hi), _crop_box(lab_img, lo, hi)
    return bg, lab_img, window


def subject_overlays(background_img, labels_img, out_png, *, title: str | None = None,
                     cut_coords: Mapping[str, Sequence[float]] | None = None,
                     units: str | None = None,
                     lookup: Lookup = None,
                     vmin: float | None = None, vmax: float | None = None,
                     margin_mm: float | None = 25.0, dpi: int = 90) -> Path:
    """Draw the native-space nuclei as contours on a background image; write a PNG.

    One row per cut (by default through the substantia nigra and through the globus
    pallidus, :func:`nuclei_cut_coords`), each with sagittal, coronal and axial views; one
    colour per region (both hemispheres), legend at the bottom.

    Parameters
    ----------
    background_img : nibabel image or path
        The registration image (T1w, GRE magnitude) or a map (χ in ppm, R2* in 1/s), on any
        grid and in any orientation.
    labels_img : nibabel image or path
        Atomic labels in the same world (scanner) space (brainiron's
        ``*_space-individual_atlas-CIT168_dseg.nii.gz``), on any grid.
    out_png : path
        Destination PNG (written atomically).
    title : str, optional
        Figure title (e.g. ``"sub-01 · χ (ppm)"``).
    cut_coords : mapping, optional
        Row name → world coordinates ``(x, y, z)`` in mm of the cut; default
        ``{"SN": ..., "GP": ...}`` from the labels.
    units : str, optional
        Units of the background, shown on the colour bar's row titles (``ppm``, ``1/s``).
    lookup : mapping, DataFrame or path, optional
        Label index → name, or the ``index, name`` table (``_dseg.tsv``); default
        brainiron's region table.
    vmin, vmax : float, optional
        Grey-scale window in the background's units; default its 1st to 99.5th percentile
        (non-zero voxels), widened to the 99.5th percentile inside the labels.
    margin_mm : float or None
        The views show the labelled box plus this margin (mm); ``None`` shows the whole image.
    dpi : int
        Resolution of the PNG (the figure is 12 × 3.4 inches per row).

    Returns
    -------
    Path
        ``out_png``.
    """
    from nilearn import plotting
    from nilearn.image import new_img_like

    names = _label_names(lookup)
    coords = dict(cut_coords) if cut_coords is not None else nuclei_cut_coords(labels_img,
                                                                               lookup)
    with warnings.catch_warnings():
        # nilearn's notes on resampling and plotting (oblique grids, future defaults).
        warnings.filterwarnings("ignore", module=r"nilearn\.")
        bg, lab_img, (lo_v, hi_v) = _display_images(background_img, labels_img, margin_mm)
        vmin = lo_v if vmin is None else vmin
        vmax = hi_v if vmax is None else vmax
        labels = np.asarray(lab_img.dataobj)

        present = sorted(set(np.unique(labels).tolist()) - {0})
        groups: dict[str, list[int]] = {}
        for index in present:
            groups.setdefault(names.get(index, (str(index), ""))[0], []).append(index)
        colours = colours_for(list(groups))

        n_rows = len(coords)
        row_h, title_h, legend_h = 3.4, 0.45 if title else 0.1, 0.55
        height = n_rows * row_h + title_h + legend_h
        fig = Figure(figsize=(12, height), facecolor="black")
        for r, (row_name, xyz) in enumerate(coords.items()):
            bottom = (legend_h + (n_rows - 1 - r) * row_h) / height
            display = plotting.plot_img(
                bg, cut_coords=tuple(float(v) for v in xyz), display_mode="ortho",
                figure=fig, axes=(0.0, bottom, 1.0, row_h / height), cmap="gray",
                vmin=vmin, vmax=vmax, colorbar=True, black_bg=True, annotate=True,
                draw_cross=False, interpolation="nearest", cbar_tick_format="%.3g")
            for name, indices in groups.items():
                mask = new_img_like(lab_img, np.isin(labels, indices).astype(np.uint8))
                display.add_contours(mask, levels=[0.5], colors=[colours[name]],
                                     linewidths=1.4)
            what = f"   (colour bar in {units})" if units else ""
            display.title(f"cut through {row_name}{what}", size=11, color="white",
                          bgcolor="black", y=1.0)
        if title:
            fig.text(0.01, 1 - 0.5 * title_h / height, title, color="white", fontsize=13,
                     va="center", ha="left", weight="bold")
        handles = [Line2D([], [], color=colours[n], lw=2.5, label=n) for n in groups]
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10),
                       frameon=False, labelcolor="white", fontsize=10,
                       bbox_to_anchor=(0.5, 0.0))
        out_png = Path(out_png)
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, facecolor="black")
    return out_png


def colours_for(names: Sequence[str]) -> dict[str, str]:
    """Region name → contour colour (:data:`REGION_COLOURS`, then a spare palette)."""
    out, extra = {}, iter(_EXTRA_COLOURS * (1 + len(names)))
    for name in names:
        out[name] = REGION_COLOURS.get(name) or next(extra)
    return out

