"""Figures and the HTML report: nuclei overlays, group plots and one self-contained page.

Three public functions, from pixels to page:

* :func:`subject_overlays` draws the native-space nuclei as coloured contours on a background
  (the registration image, a χ map, an R2* map), in sagittal, coronal and axial views through
  the substantia nigra and through the globus pallidus (:func:`nuclei_cut_coords`);
* :func:`group_figures` draws, per map, each region's statistic by group (box and points,
  left and right hemisphere side by side) and, when the table has iron columns, iron versus
  age with the age-normative curve;
* :func:`build_report` reads a brainiron derivatives folder and writes ``report/index.html``:
  one HTML file with every image embedded as a base64 ``data:`` URI and inline CSS, so it
  opens anywhere without network access and can be mailed or archived as one file.

Images in any orientation (RAS, LPS, oblique) are shown in world (scanner) coordinates, in
nilearn's neurological convention (the subject's left on the left of coronal and axial
views); oblique grids are resampled for display only (labels by nearest neighbour).

References
----------
.. [1] Fonov V et al. (2011) Unbiased average age-appropriate atlases for pediatric studies.
   NeuroImage 54:313-327.
.. [2] Pauli WM, Nili AN, Tyszka JM (2018) A high-resolution probabilistic in vivo atlas of
   human subcortical brain nuclei. Sci Data 5:180063.
.. [3] Avants BB et al. (2008) Symmetric diffeomorphic image registration with
   cross-correlation. Med Image Anal 12:26-41.
.. [4] Hallgren B, Sourander P (1958) The effect of age on the non-haemin iron in the human
   brain. J Neurochem 3:41-51.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import os
import platform
import re
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import __version__, atlas, norms
from .io import atomic_path, parse_name, read_json, read_tsv, write_text

__all__ = [
    "REGION_COLOURS",
    "build_report",
    "group_figures",
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

_GROUP_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")

_MAP_TITLES = {"Chimap": "χ (QSM)", "R2starmap": "R2*", "T2starmap": "T2*", "T1w": "T1w",
               "MEGRE": "GRE magnitude"}
_MAP_UNITS = {"Chimap": "ppm", "R2starmap": "1/s", "T2starmap": "s"}
_MAP_METHODS = {"Chimap": "magnetic susceptibility χ (QSM, ppm)",
                "R2starmap": "the transverse relaxation rate R2* (1/s)"}
_SOFTWARE = ("brainiron", "numpy", "scipy", "pandas", "nibabel", "nilearn", "matplotlib",
             "scikit-image", "statsmodels", "antspyx", "snakemake")

_REFERENCES = {
    "fonov": "Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL (2011) Unbiased "
             "average age-appropriate atlases for pediatric studies. NeuroImage 54:313-327.",
    "pauli": "Pauli WM, Nili AN, Tyszka JM (2018) A high-resolution probabilistic in vivo atlas "
             "of human subcortical brain nuclei. Sci Data 5:180063.",
    "fischl": "Fischl B et al. (2002) Whole brain segmentation: automated labeling of "
              "neuroanatomical structures in the human brain. Neuron 33:341-355.",
    "avants": "Avants BB, Epstein CL, Grossman M, Gee JC (2008) Symmetric diffeomorphic image "
              "registration with cross-correlation: evaluating automated labeling of elderly "
              "and neurodegenerative brain. Med Image Anal 12:26-41.",
    "hallgren": "Hallgren B, Sourander P (1958) The effect of age on the non-haemin iron in "
                "the human brain. J Neurochem 3:41-51.",
    "bh": "Benjamini Y, Hochberg Y (1995) Controlling the false discovery rate: a practical and "
          "powerful approach to multiple testing. J R Stat Soc B 57:289-300.",
}


# --------------------------------------------------------------------------------------------
# Label images
# --------------------------------------------------------------------------------------------


def _as_img(img) -> nib.spatialimages.SpatialImage:
    """A 3D nibabel image from a path or an image (trailing singleton dimensions dropped)."""
    if isinstance(img, str | os.PathLike):
        img = nib.load(img)
    if len(img.shape) > 3:
        if any(s != 1 for s in img.shape[3:]):
            raise ValueError(f"expected a 3D image, got shape {img.shape}")
        img = nib.Nifti1Image(np.asarray(img.dataobj).reshape(img.shape[:3]), img.affine)
    return img


_HEMI_SUFFIX = re.compile(r"_(L|R|LH|RH|left|right)$")


def _label_names(labels_img, lookup) -> dict[int, tuple[str, str]]:
    """Label index → (region, hemisphere ``L`` / ``R`` / ``""``).

    From ``lookup`` (mapping or ``index, name`` table, names like ``SNr_L``), else the
    ``_dseg.tsv`` beside a label file, else brainiron's region table.
    """
    if lookup is None and isinstance(labels_img, str | os.PathLike):
        sidecar = Path(re.sub(r"\.nii(\.gz)?$", ".tsv", str(labels_img)))
        if sidecar.is_file():
            lookup = read_tsv(sidecar)
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


def nuclei_cut_coords(labels_img, lookup: Mapping[int, str] | pd.DataFrame | None = None
                      ) -> dict[str, tuple[float, float, float]]:
    """World coordinates (mm) of the cuts through the substantia nigra and the pallidum.

    Parameters
    ----------
    labels_img : nibabel image or path
        Atomic labels on any grid (brainiron's ``*_dseg.nii.gz``).
    lookup : mapping or DataFrame, optional
        Label index → name (``SNr_L`` ...); default the ``_dseg.tsv`` beside a path, else
        brainiron's region table.

    Returns
    -------
    dict
        ``{"SN": (x, y, z), "GP": (x, y, z)}`` in the image's world coordinates (mm): ``y``
        and ``z`` from the centroid of both hemispheres' nucleus, ``x`` from the left one
        (so that the sagittal view cuts through a nucleus, not the midline). A nucleus with
        no voxel falls back to the centroid of all labels, then to the image centre.
    """
    names = _label_names(labels_img, lookup)
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


def _display_window(bg, lab_img) -> tuple[float, float]:
    """Grey-scale window: 1st to 99.5th percentile of the non-zero background, widened to the
    99.5th percentile inside the labels (iron-rich nuclei are the brightest voxels of χ and R2*
    maps: they should not saturate)."""
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


def subject_overlays(background_img, labels_img, out_png, *, title: str | None = None,
                     cut_coords: Mapping[str, Sequence[float]] | None = None,
                     units: str | None = None,
                     lookup: Mapping[int, str] | pd.DataFrame | None = None,
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
    lookup : mapping or DataFrame, optional
        Label index → name; default the ``_dseg.tsv`` beside ``labels_img``, else brainiron's
        region table.
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
    from nilearn.image import new_img_like, reorder_img

    names = _label_names(labels_img, lookup)
    coords = dict(cut_coords) if cut_coords is not None else nuclei_cut_coords(labels_img,
                                                                               lookup)
    with warnings.catch_warnings():
        # nilearn's notes on resampling and plotting (oblique grids, future defaults).
        warnings.filterwarnings("ignore", module=r"nilearn\.")
        bg = _as_img(background_img)
        bg = nib.Nifti1Image(np.nan_to_num(np.asarray(bg.dataobj, dtype=np.float32)),
                             bg.affine)
        lab_img = _as_img(labels_img)
        lab_img = nib.Nifti1Image(_label_data(lab_img).astype(np.int16), lab_img.affine)
        lo_v, hi_v = _display_window(bg, lab_img)  # on the voxels as stored
        vmin = lo_v if vmin is None else vmin
        vmax = hi_v if vmax is None else vmax
        crop = margin_mm is not None and np.asarray(lab_img.dataobj).any()
        if crop:  # crop before reordering: an oblique grid is resampled, and that costs
            lo, hi = _world_box(lab_img, np.asarray(lab_img.dataobj) > 0, margin_mm)
            bg, lab_img = _crop_box(bg, lo, hi), _crop_box(lab_img, lo, hi)
        bg = reorder_img(bg, resample="linear")
        lab_img = reorder_img(lab_img, resample="nearest")
        if crop and np.asarray(lab_img.dataobj).any():  # again: an oblique box overfills
            lo, hi = _world_box(lab_img, np.asarray(lab_img.dataobj) > 0, margin_mm)
            bg, lab_img = _crop_box(bg, lo, hi), _crop_box(lab_img, lo, hi)
        labels = np.asarray(lab_img.dataobj)

        present = sorted(set(np.unique(labels).tolist()) - {0})
        groups: dict[str, list[int]] = {}
        for index in present:
            groups.setdefault(names.get(index, (str(index), ""))[0], []).append(index)
        colours = _colours_for(list(groups))

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


def _colours_for(names: Sequence[str]) -> dict[str, str]:
    out, extra = {}, iter(_EXTRA_COLOURS * (1 + len(names)))
    for name in names:
        out[name] = REGION_COLOURS.get(name) or next(extra)
    return out


# --------------------------------------------------------------------------------------------
# Group figures
# --------------------------------------------------------------------------------------------


def _region_order(table: pd.DataFrame) -> list[str]:
    known = list(dict.fromkeys(atlas.region_table()["region"]))
    present = list(dict.fromkeys(table["region"].astype(str)))
    return [r for r in known if r in present] + [r for r in present if r not in known]


def _group_order(table: pd.DataFrame, reference: str | None = "control") -> list[str]:
    groups = sorted(set(table["group"].dropna().astype(str)))
    if reference in groups:
        groups.remove(reference)
        groups.insert(0, reference)
    return groups


def _with_group(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    if "group" not in out:
        out["group"] = "all"
    out["group"] = out["group"].astype(object).where(out["group"].notna(), "n/a").astype(str)
    return out


def _save_figure(fig: Figure, path: Path, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return path


def _map_label(map_name: str) -> str:
    return _MAP_TITLES.get(map_name, map_name)


def group_figures(regions: pd.DataFrame, out_dir, *, statistic: str = "mean",
                  reference_group: str | None = "control", dpi: int = 80) -> dict[str, Path]:
    """Per-map group figures from the long regional table.

    For each map:

    * ``<map>_<statistic>``: one panel per region (atomic nuclei, then the SN and GP
      composites), the region's ``statistic`` of every subject as points over a box plot,
      by group, left (L) and right (R) hemisphere side by side; each panel has its own
      y-scale (in the map's units);
    * ``<map>_iron_age`` (only when the table has ``iron_mg_per_kg`` and ``age`` values):
      iron (mg/kg wet tissue) versus age per region, with the age-normative expectation of
      Hallgren & Sourander (line) ± 1 normative SD (band); circles are left, triangles right
      hemispheres; open markers where the calibration is not valid (``calibration_valid``
      false, e.g. thalamus).

    Parameters
    ----------
    regions : DataFrame
        brainiron's ``group/regions.tsv`` (``map, units, region, hemisphere, <statistic>``,
        optionally ``group``, ``age``, ``iron_mg_per_kg``, ``calibration``,
        ``calibration_valid``).
    out_dir : path
        Folder for the PNGs (created).
    statistic : str
        Column plotted in the group figure (``mean``, ``median`` ...).
    reference_group : str, optional
        Group drawn first.
    dpi : int
        Resolution of the PNGs.

    Returns
    -------
    dict
        Figure name → PNG path, in drawing order; maps without any value are skipped.
    """
    out_dir = Path(out_dir)
    table = _with_group(regions)
    out: dict[str, Path] = {}
    if table.empty or statistic not in table:
        return out
    groups = _group_order(table, reference_group)
    for map_name in dict.fromkeys(table["map"].astype(str)):
        sub = table[(table["map"] == map_name) & table[statistic].notna()]
        if sub.empty:
            continue
        units = str(sub["units"].iloc[0]) if "units" in sub else ""
        fig = _box_figure(sub, groups, statistic, map_name, units)
        out[f"{map_name}_{statistic}"] = _save_figure(
            fig, out_dir / f"group_map-{map_name}_{statistic}.png", dpi)
        if {"iron_mg_per_kg", "age"} <= set(sub.columns):
            iron = sub[sub["iron_mg_per_kg"].notna() & pd.to_numeric(sub["age"],
                                                                      errors="coerce").notna()]
            if not iron.empty:
                fig = _iron_age_figure(iron, groups, map_name)
                if fig is not None:
                    out[f"{map_name}_iron_age"] = _save_figure(
                        fig, out_dir / f"group_map-{map_name}_iron_age.png", dpi)
    return out


def _panel_grid(n: int, ncols: int = 4, size=(3.1, 2.6)) -> tuple[Figure, list]:
    """A grid of panels with fixed margins (tight_layout would double the drawing time)."""
    nrows = max(1, -(-n // ncols))
    width, height = size[0] * ncols, size[1] * nrows + 0.9
    fig = Figure(figsize=(width, height), facecolor="white")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - 0.75 / height, wspace=0.32, hspace=0.5)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _box_figure(sub: pd.DataFrame, groups: list[str], statistic: str, map_name: str,
                units: str) -> Figure:
    regions = _region_order(sub)
    hemis = [h for h in ("L", "R") if h in set(sub["hemisphere"].astype(str))] or \
        sorted(set(sub["hemisphere"].astype(str)))
    fig, axes = _panel_grid(len(regions))
    rng = np.random.default_rng(0)
    gap = 0.8
    for ax, region in zip(axes, regions, strict=False):
        pos, ticks, labels = 0.0, [], []
        for g, group in enumerate(groups):
            colour = _GROUP_COLOURS[g % len(_GROUP_COLOURS)]
            for hemi in hemis:
                values = sub.loc[(sub["region"] == region) & (sub["group"] == group)
                                 & (sub["hemisphere"].astype(str) == hemi),
                                 statistic].to_numpy(float)
                values = values[np.isfinite(values)]
                if values.size:
                    bp = ax.boxplot([values], positions=[pos], widths=0.6, patch_artist=True,
                                    showfliers=False, medianprops={"color": "black"})
                    for box in bp["boxes"]:
                        box.set(facecolor=colour, alpha=0.35, edgecolor=colour)
                    jitter = rng.uniform(-0.15, 0.15, values.size)
                    ax.scatter(pos + jitter, values, s=14, color=colour, edgecolor="black",
                               linewidth=0.4, zorder=3)
                ticks.append(pos)
                labels.append(hemi)
                pos += 1.0
            pos += gap
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_xlim(-0.7, pos - gap - 0.3)
        ax.set_title(region, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[::4]:
        if ax.get_visible():
            ax.set_ylabel(f"{statistic} ({units})", fontsize=9)
    ids = sub["participant_id"] if "participant_id" in sub else pd.Series(sub.index)
    handles = [Patch(facecolor=_GROUP_COLOURS[g % len(_GROUP_COLOURS)], alpha=0.6,
                     label=f"{group} (n={ids[sub['group'] == group].nunique()})")
               for g, group in enumerate(groups)]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False,
               fontsize=9, bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{_map_label(map_name)}: regional {statistic} ({units}) by group; "
                 "L and R hemisphere side by side", x=0.01, y=0.995, ha="left", va="top",
                 fontsize=11)
    return fig


def _norm_regions() -> dict[str, str]:
    table = atlas.region_table().drop_duplicates("region")
    return dict(zip(table["region"], table["norm_region"], strict=True))


def _iron_age_figure(sub: pd.DataFrame, groups: list[str], map_name: str) -> Figure | None:
    norm_of = _norm_regions()
    norm_table = norms.iron_norms()
    regions = _region_order(sub)
    fig, axes = _panel_grid(len(regions))
    age_all = pd.to_numeric(sub["age"], errors="coerce")
    lo, hi = max(0.0, float(age_all.min()) - 5), float(age_all.max()) + 5
    grid = np.linspace(lo, hi, 100)
    for ax, region in zip(axes, regions, strict=False):
        rows = sub[sub["region"] == region]
        norm = rows["norm_region"].dropna().iloc[0] if "norm_region" in rows and \
            rows["norm_region"].notna().any() else norm_of.get(region)
        if norm in norm_table.index:
            expected = norms.expected_iron(norm, grid)
            sd = float(norm_table.loc[norm, "sd_mg_per_kg"])
            ax.fill_between(grid, expected - sd, expected + sd, color="0.6", alpha=0.3, lw=0)
            ax.plot(grid, expected, color="0.25", lw=1.2)
        valid = True
        if "calibration_valid" in rows and rows["calibration_valid"].notna().any():
            valid = bool(rows["calibration_valid"].astype(str).str.lower()
                         .isin(["true", "1"]).all())
        for g, group in enumerate(groups):
            colour = _GROUP_COLOURS[g % len(_GROUP_COLOURS)]
            for hemi, marker in (("L", "o"), ("R", "^")):
                pts = rows[(rows["group"] == group) & (rows["hemisphere"].astype(str) == hemi)]
                if pts.empty:
                    continue
                ax.scatter(pd.to_numeric(pts["age"], errors="coerce"), pts["iron_mg_per_kg"],
                           marker=marker, s=22, zorder=3, linewidth=1.0,
                           facecolor=colour if valid else "none", edgecolor=colour)
        note = "" if norm in norm_table.index else " (no norm)"
        note += "" if valid else " (calibration not valid)"
        ax.set_title(f"{region}{note}", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[::4]:
        if ax.get_visible():
            ax.set_ylabel("iron (mg/kg)", fontsize=9)
    for ax in axes:
        if ax.get_visible():
            ax.set_xlabel("age (years)", fontsize=8)
    cal = ", ".join(dict.fromkeys(sub["calibration"].dropna().astype(str))) \
        if "calibration" in sub else "?"
    handles = [Patch(color=_GROUP_COLOURS[g % len(_GROUP_COLOURS)], label=group)
               for g, group in enumerate(groups)]
    handles += [Line2D([], [], marker="o", ls="", color="0.3", label="L"),
                Line2D([], [], marker="^", ls="", color="0.3", label="R"),
                Patch(color="0.6", alpha=0.4, label="norm ± 1 SD")]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False,
               fontsize=9, bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"Iron from {_map_label(map_name)} ({cal}) versus age; line: Hallgren & "
                 "Sourander norm", x=0.01, y=0.995, ha="left", va="top", fontsize=11)
    return fig


def _truth_figure(merged: pd.DataFrame) -> Figure:
    """Measured versus true regional values of a phantom, one panel per quantity."""
    quantities = list(dict.fromkeys(merged["quantity"]))
    fig, axes = _panel_grid(len(quantities), ncols=max(1, len(quantities)), size=(3.6, 3.4))
    for ax, q in zip(axes, quantities, strict=False):
        d = merged[merged["quantity"] == q]
        ax.scatter(d["true"], d["measured"], s=14, color="#4c72b0", edgecolor="black",
                   linewidth=0.3)
        lo = float(np.nanmin([d["true"].min(), d["measured"].min()]))
        hi = float(np.nanmax([d["true"].max(), d["measured"].max()]))
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
        ax.set_xlabel("true", fontsize=9)
        ax.set_ylabel("measured", fontsize=9)
        ax.set_title(q, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Phantom: measured regional value versus ground truth (dashed: identity)",
                 x=0.01, y=0.995, ha="left", va="top", fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------
# Report: reading the derivatives
# --------------------------------------------------------------------------------------------


def _refinement_note(atlas_rows: pd.DataFrame, refined: pd.DataFrame) -> str:
    """Atlas versus contrast-refined voxels and means of the refined regions (HTML)."""
    keys = ["participant_id", "session_id", "map", "region", "hemisphere"]
    cols = keys + ["n_voxels", "mean"]
    refined = refined.assign(session_id=refined["session_id"].fillna(""))
    atlas_rows = atlas_rows.assign(session_id=atlas_rows["session_id"].fillna(""))
    both = refined[cols].merge(atlas_rows[cols], on=keys, suffixes=(" refined", " atlas"))
    both = both[keys + ["n_voxels atlas", "n_voxels refined", "mean atlas", "mean refined"]]
    return ("<p class='small'>Regions whose boundaries were refined from the χ / R2* contrast "
            "(refinement.enabled): voxels and mean (map units) with the atlas labels and "
            "after refinement. The group comparison and figures use the atlas rows; both are "
            "in regions.tsv (segmentation column).</p>"
            + _html_table(both, "refinement-table", scroll=True, text_columns=keys))


def _read_optional_tsv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return read_tsv(path, dtype={"session_id": str, "participant_id": str})
    except Exception:  # noqa: BLE001 - an unreadable optional table is reported as missing
        return None


def _subjects(deriv_dir: Path) -> list[dict]:
    """Every subject (× session) with a registration QC sidecar, and its files."""
    out = []
    for qc_path in sorted(deriv_dir.glob("sub-*/**/anat/*_desc-registration_qc.json")):
        key = qc_path.name.removesuffix("_desc-registration_qc.json")
        anat = qc_path.parent
        try:
            qc = read_json(qc_path)
        except Exception:  # noqa: BLE001
            qc = {}
        validated_path = anat / f"{key}_desc-validated_inputs.json"
        try:
            validated = read_json(validated_path) if validated_path.is_file() else {}
        except Exception:  # noqa: BLE001
            validated = {}
        out.append({"key": key, "anat": anat, "rel": anat.relative_to(deriv_dir), "qc": qc,
                    "validated": validated,
                    "dseg": anat / f"{key}_space-individual_atlas-CIT168_dseg.nii.gz"})
    return out


def _locate(name_or_path, subject: dict, bids_dir: Path | None) -> Path | None:
    """Find an input image: the recorded path, the derivatives folder, or ``bids_dir``."""
    if not name_or_path:
        return None
    path = Path(str(name_or_path))
    if path.is_absolute() and path.is_file():
        return path
    recorded = [Path(p) for p in _recorded_paths(subject)]
    for p in recorded:
        if p.name == path.name and p.is_file():
            return p
    candidate = subject["anat"] / path.name
    if candidate.is_file():
        return candidate
    if bids_dir is not None:
        rel = subject["rel"]
        for c in (bids_dir / rel / path.name, *bids_dir.glob(f"{rel.parts[0]}/**/{path.name}")):
            if c.is_file():
                return c
    return None


def _recorded_paths(subject: dict) -> list[str]:
    info = subject["validated"].get("subject", {})
    paths = list((info.get("maps") or {}).values())
    paths += [info.get("t1w")] + list(info.get("megre") or [])
    paths.append(subject["qc"].get("registration_image_path"))
    return [p for p in paths if p]


def _subject_maps(subject: dict, regions: pd.DataFrame | None, maps: Sequence[str]
                  ) -> dict[str, str]:
    """Map name → file name or path of the quantified map (from the table's ``source``)."""
    out: dict[str, str] = {}
    pid, _, ses = subject["key"].partition("_ses-")
    if regions is not None and {"source", "map", "participant_id"} <= set(regions.columns):
        rows = regions[regions["participant_id"].astype(str) == pid]
        if ses and "session_id" in rows:
            rows = rows[rows["session_id"].astype(str).isin([ses, f"ses-{ses}"])]
        for map_name, src in rows.drop_duplicates("map")[["map", "source"]].itertuples(
                index=False):
            out[str(map_name)] = str(src)
    info = subject["validated"].get("subject", {})
    for kind, path in (info.get("maps") or {}).items():
        name = "R2starmap" if kind == "T2starmap" else kind
        if name in maps or not maps:
            out.setdefault(name, path)
    return out


def _truth_tables(phantom_truth: Path) -> pd.DataFrame | None:
    files = sorted(phantom_truth.glob("sub-*/**/*_desc-truth_regions.tsv"))
    if not files:
        return None
    return pd.concat([read_tsv(f, dtype={"participant_id": str}) for f in files],
                     ignore_index=True)


def _truth_comparison(regions: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Long table: participant, region, hemisphere, quantity, true, measured."""
    pairs = [("Chimap", "mean", "chi_ppm", "χ (ppm)"),
             ("R2starmap", "mean", "r2star_per_s", "R2* (1/s)"),
             ("Chimap", "iron_mg_per_kg", "iron_mg_per_kg", "iron from χ (mg/kg)"),
             ("R2starmap", "iron_mg_per_kg", "iron_mg_per_kg", "iron from R2* (mg/kg)")]
    keys = ["participant_id", "region", "hemisphere"]
    frames = []
    for map_name, measured, true, label in pairs:
        if measured not in regions or true not in truth:
            continue
        m = regions[regions["map"] == map_name][keys + [measured]].rename(
            columns={measured: "measured"})
        t = truth[keys + [true]].rename(columns={true: "true"})
        both = m.merge(t, on=keys).dropna(subset=["measured", "true"])
        if not both.empty:
            frames.append(both.assign(quantity=label))
    if not frames:
        return pd.DataFrame(columns=[*keys, "measured", "true", "quantity"])
    return pd.concat(frames, ignore_index=True)


def _truth_summary(merged: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for q, d in merged.groupby("quantity", sort=False):
        err = d["measured"] - d["true"]
        r = float(np.corrcoef(d["true"], d["measured"])[0, 1]) if len(d) > 2 else np.nan
        rows.append({"quantity": q, "n": len(d), "mean error": err.mean(),
                     "mean |error|": err.abs().mean(), "max |error|": err.abs().max(),
                     "r": r})
    return pd.DataFrame(rows)


def _pretty_json(obj, indent: int = 0) -> str:
    """Indented JSON with lists of scalars kept on one line."""
    pad = "  " * (indent + 1)
    if isinstance(obj, Mapping) and obj:
        items = [f"{pad}{json.dumps(str(k))}: {_pretty_json(v, indent + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list | tuple) and any(isinstance(v, Mapping | list | tuple) for v in obj):
        items = [f"{pad}{_pretty_json(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj, default=str, ensure_ascii=False)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in _SOFTWARE:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# --------------------------------------------------------------------------------------------
# Report: HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
 background:#fafafa;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:1em 2em 4em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em}
nav{background:#fff;border:1px solid #ddd;padding:.5em 1em;border-radius:4px}
nav a{margin-right:1.2em}
table.data{border-collapse:collapse;font-size:13px;margin:.6em 0;background:#fff}
table.data th,table.data td{border:1px solid #ddd;padding:3px 7px;text-align:right}
table.data td{white-space:nowrap}
table.data th{background:#f0f0f0;position:sticky;top:0}
table.data td.t,table.data th.t{text-align:left}
table.data tr.sig td{font-weight:bold;background:#fff6d5}
.scroll{max-height:480px;overflow:auto;display:inline-block;max-width:100%}
img{max-width:100%;height:auto;display:block;margin:.5em 0;border:1px solid #ddd}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.6em 0}
.bad{background:#fdecea;border-left:4px solid #d93025;padding:.4em .8em;margin:.6em 0}
.kv td:first-child{font-weight:600;text-align:left}
pre{background:#fff;border:1px solid #ddd;padding:.8em;overflow:auto;font-size:12px}
section.subject{border-top:1px solid #ccc;margin-top:1.5em}
.small{font-size:12px;color:#555}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
  }
  document.body.dataset.imagesLoaded = String(loaded);
  document.body.dataset.imagesTotal = String(images.length);
});
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}g}"
    try:
        if pd.isna(value):
            return "n/a"
    except (TypeError, ValueError):
        pass
    return str(value)


def _html_table(df: pd.DataFrame, table_id: str, *, text_columns: Sequence[str] = (),
                highlight: pd.Series | None = None, scroll: bool = False) -> str:
    head = "".join(
        f'<th class="t">{_e(c)}</th>' if c in text_columns else f"<th>{_e(c)}</th>"
        for c in df.columns)
    rows = []
    for i, row in enumerate(df.itertuples(index=False)):
        cls = ' class="sig"' if highlight is not None and bool(highlight.iloc[i]) else ""
        cells = "".join(
            f'<td class="t">{_e(_fmt(v))}</td>' if c in text_columns else f"<td>{_e(_fmt(v))}</td>"
            for c, v in zip(df.columns, row, strict=True))
        rows.append(f"<tr{cls}>{cells}</tr>")
    table = (f'<table class="data" id="{_e(table_id)}"><thead><tr>{head}</tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table>")
    return f'<div class="scroll">{table}</div>' if scroll else table


def _img_tag(png: Path, alt: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _pm(mean, sd, n=None) -> str:
    if not np.isfinite(mean):
        return "n/a"
    text = f"{mean:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{mean:.4g}"
    return f"{text} (n={n})" if n is not None else text


def _summary_table(regions: pd.DataFrame, statistic: str, groups: list[str],
                   value: str | None = None) -> pd.DataFrame:
    """Rows map × region × hemisphere; one column per group: mean ± SD (n) of ``value``."""
    value = value or statistic
    df = regions[regions[value].notna()]
    order = {r: i for i, r in enumerate(_region_order(df))}
    rows = []
    for (map_name, region, hemi), d in df.groupby(["map", "region", "hemisphere"], sort=False):
        row = {"map": map_name, "units": d["units"].iloc[0] if value == statistic else "mg/kg",
               "region": region, "hemisphere": hemi}
        for group in groups:
            v = d.loc[d["group"] == group, value].to_numpy(float)
            v = v[np.isfinite(v)]
            row[group] = _pm(v.mean(), v.std(ddof=1) if v.size > 1 else np.nan, v.size) \
                if v.size else "n/a"
        if value == "iron_mg_per_kg" and "iron_z" in d:
            z = d["iron_z"].to_numpy(float)
            row["mean z"] = float(np.nanmean(z)) if np.isfinite(z).any() else np.nan
            if "calibration" in d:
                row["calibration"] = ", ".join(dict.fromkeys(d["calibration"].dropna()))
            if "calibration_valid" in d:
                row["valid"] = ("yes" if d["calibration_valid"].astype(str).str.lower()
                                .isin(["true", "1"]).all() else "no")
        row["_order"] = (map_name, order.get(region, 99), hemi)
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    maps = list(dict.fromkeys(df["map"]))
    out["_k"] = out["_order"].map(lambda t: (maps.index(t[0]), t[1], t[2]))
    return out.sort_values("_k").drop(columns=["_order", "_k"]).reset_index(drop=True)


def _comparison_display(comp: pd.DataFrame) -> pd.DataFrame:
    cols = {}
    for c in ("outcome", "map", "units", "region", "hemisphere"):
        if c in comp:
            cols[c] = comp[c]
    cols["comparison"] = comp.get("group", pd.Series("", index=comp.index)).astype(str) + \
        " − " + comp.get("reference_group", pd.Series("", index=comp.index)).astype(str)
    if {"n_group", "n_reference"} <= set(comp.columns):
        cols["n"] = [f"{_fmt(g)} / {_fmt(r)}" for g, r in zip(comp["n_group"],
                                                              comp["n_reference"], strict=True)]
    for who in ("reference", "group"):
        if f"mean_{who}" in comp:
            cols[f"mean ± SD ({who})"] = [_pm(float(m), float(s)) for m, s in zip(
                comp[f"mean_{who}"], comp.get(f"sd_{who}", np.nan), strict=False)]
    if "difference" in comp:
        cols["difference [95% CI]"] = [
            "n/a" if not np.isfinite(float(d)) else f"{float(d):.4g} [{_fmt(lo)}, {_fmt(hi)}]"
            for d, lo, hi in zip(comp["difference"], comp.get("ci_low", np.nan),
                                 comp.get("ci_high", np.nan), strict=False)]
    for c in ("p", "p_fdr", "cohens_d", "covariates"):
        if c in comp:
            cols[c] = comp[c]
    return pd.DataFrame(cols).reset_index(drop=True)


def _methods(regions: pd.DataFrame | None, comp: pd.DataFrame | None, config: Mapping,
             subjects: list[dict]) -> tuple[str, dict[str, str], list[str]]:
    """The methods paragraph (HTML), its references (key → text, in citation order) and the
    calibrations it cites."""
    refs: dict[str, str] = {}

    def cite(key: str, text: str | None = None) -> str:
        refs.setdefault(key, text or _REFERENCES[key])
        return f"[{list(refs).index(key) + 1}]"

    reg = config.get("registration") or {}
    kinds = sorted({s["qc"].get("registration_image") for s in subjects
                    if s["qc"].get("registration_image")})
    maps = list(dict.fromkeys(regions["map"])) if regions is not None and "map" in regions \
        else list(config.get("maps") or [])
    maps_text = " and ".join(_MAP_METHODS.get(m, m) for m in maps) or "the maps'"
    chi_template = any(str(s["qc"].get("template_contrast", "")).startswith("chi")
                       for s in subjects)
    metrics = {reg.get("syn_metric", "CC") if k == "T1w" or (k == "Chimap" and chi_template)
               else reg.get("multicontrast_syn_metric", "mattes") for k in kinds or ["T1w"]}
    metric = " / ".join(sorted(metrics))
    parts = []
    data = "brainiron's synthetic phantom" if not config.get("bids_dir") and config else \
        "the BIDS dataset"
    parts.append(
        f"Regional values of {maps_text} were measured in deep grey nuclei of {data}, in each "
        "subject's native space (maps are never resampled). The "
        f"{' / '.join(kinds) or 'registration'} image of each subject was registered to the "
        f"MNI152NLin2009cAsym template {cite('fonov')} with ANTs (ANTsPy, "
        f"{_e(reg.get('transform', 'SyN'))}, metric {_e(metric)}) "
        f"{cite('avants')}, and the CIT168 subcortical nuclei {cite('pauli')} with the "
        f"FreeSurfer aseg thalamus {cite('fischl')} were carried to the subject's grid through "
        "the inverse transform (nearest-neighbour labels, partial-volume probabilities). "
        "Statistics use the voxels of a region with a finite, non-zero value; SN is "
        "SNc_PBP_VTA + SNr and GP is GPe + GPi.")
    if chi_template:
        parts.append(
            "Subjects with a χ map only were registered to a χ-contrast version of the template "
            "built by brainiron (normative χ of each nucleus, tissue class and a typical "
            "dentate, from the Hallgren & Sourander iron norms through the χ calibration), "
            "after an affine alignment of the brain masks.")
    parts.append("The dentate nucleus was segmented from the χ (else R2*) map inside an "
                 "atlas-derived search region in the cerebellar white matter (Otsu threshold, "
                 "largest connected component).")
    if (config.get("refinement") or {}).get("enabled"):
        ref = config.get("refinement") or {}
        parts.append(
            "The boundaries of " + _e(", ".join(ref.get("regions", []))) + " were refined "
            f"from the χ / R2* contrast (up to {int(ref.get('margin_voxels', 1))} voxel(s) "
            "outwards; a two-class threshold applied when the nucleus-surround contrast "
            f"exceeded {float(ref.get('min_contrast', 5.0)):g} noise SDs); the tables give "
            "both the atlas and the refined statistics.")
    fitted = [s["key"] for s in subjects
              if (s["anat"] / f"{s['key']}_R2starmap.nii.gz").is_file()]
    if fitted:
        method = (config.get("relaxometry") or {}).get("method", "nlls")
        parts.append(f"R2* was fitted from the multi-echo GRE magnitude ({_e(method)}) for "
                     f"{len(fitted)} subject session(s) without an R2* map.")
    if config.get("chi_reference") == "wholebrain":
        parts.append("χ was referenced to the mean of the whole brain before the statistics.")
    cited = []
    if regions is not None and "calibration" in regions and regions["calibration"].notna().any():
        cal_table = norms.calibrations()
        texts = []
        for name in dict.fromkeys(regions["calibration"].dropna().astype(str)):
            key = f"cal:{name}"
            cited.append(name)
            if name in cal_table.index:
                row = cal_table.loc[name]
                doi = f" doi:{row['doi']}" if isinstance(row["doi"], str) and row["doi"] else ""
                sign = "−" if float(row["intercept"]) < 0 else "+"
                texts.append(f"{_e(name)} ({_e(row['map'])} = {row['slope']:g} · Fe {sign} "
                             f"{abs(float(row['intercept'])):g} {_e(row['units'])}, "
                             f"{_e(row['setting'])}, {row['field_strength_T']:g} T; constants "
                             f"marked {_e(row['mark'])}) "
                             f"{cite(key, str(row['source']) + doi)}")
            else:
                texts.append(f"{_e(name)} "
                             f"{cite(key, f'{name}: calibration not in brainiron table')}")
        stat = (config.get("iron") or {}).get("statistic", "mean")
        parts.append(
            f"Iron (mg/kg wet tissue) was estimated from the regional {_e(stat)} through the "
            f"calibration lines {'; '.join(texts)}; R2* slopes are rescaled to the field "
            "strength (marks: V read in the source, V2 read in a secondary source, R from "
            "memory of the paper, D derived by brainiron). Calibrations are not valid in the "
            "thalamus and white matter (myelin); such rows are flagged. Age-expected iron "
            f"follows the exponential model of Hallgren & Sourander {cite('hallgren')}, "
            "Fe = a·(1 − exp(−b·age)) + c, and z-scores use its between-subject SD.")
    if comp is not None and not comp.empty:
        covs = ", ".join(dict.fromkeys(comp["covariates"].dropna().astype(str))) \
            if "covariates" in comp else ""
        parts.append(
            "Groups were compared with the reference group by ordinary least squares "
            f"(statsmodels) with covariates ({_e(covs or 'none')}), 95 % confidence intervals, "
            f"and Benjamini-Hochberg false-discovery-rate correction {cite('bh')} across "
            "regions and hemispheres; Cohen's d is the adjusted difference over the residual "
            "SD.")
    return '<p id="methods-text">' + " ".join(parts) + "</p>", refs, cited


def build_report(deriv_dir, out_html, *, config: Mapping | None = None,
                 phantom_truth: str | os.PathLike | None = None,
                 bids_dir: str | os.PathLike | None = None,
                 figures_dir: str | os.PathLike | None = None,
                 overlays: bool = True) -> Path:
    """Write brainiron's HTML report: one self-contained file with every figure embedded.

    Parameters
    ----------
    deriv_dir : path
        brainiron's derivatives folder (``<output_dir>/brainiron``: ``group/regions.tsv``,
        ``group/group_comparison.tsv``, ``group/failed.tsv``, ``sub-*/anat/...``,
        ``dataset_description.json``). Missing optional files leave their section with a note.
    out_html : path
        Destination (conventionally ``<deriv_dir>/report/index.html``), written atomically.
    config : mapping, optional
        The workflow configuration; default ``GeneratedBy[0].Configuration`` of
        ``dataset_description.json``.
    phantom_truth : path, optional
        The phantom's ground truth (``derivatives/phantom-truth``): adds a measured-versus-true
        section.
    bids_dir : path, optional
        Where to look for the input images when the paths recorded in the subjects' sidecars
        no longer exist (a moved dataset).
    figures_dir : path, optional
        Where the PNGs are also written (default ``<out_html folder>/figures``).
    overlays : bool
        Draw the per-subject overlays (the slowest part: ~1 s per image).

    Returns
    -------
    Path
        ``out_html``.
    """
    deriv_dir = Path(deriv_dir)
    out_html = Path(out_html)
    figs = Path(figures_dir) if figures_dir is not None else out_html.parent / "figures"
    bids = Path(bids_dir) if bids_dir is not None else None
    description = {}
    if (deriv_dir / "dataset_description.json").is_file():
        description = read_json(deriv_dir / "dataset_description.json")
    if config is None:
        generated = description.get("GeneratedBy") or [{}]
        config = generated[0].get("Configuration") or {}
    config = dict(config)
    regions = _read_optional_tsv(deriv_dir / "group" / "regions.tsv")
    refined = None
    if regions is not None:
        regions = _with_group(regions)
        if "segmentation" in regions:  # figures and summaries: the atlas regions
            is_atlas = regions["segmentation"].fillna("atlas") == "atlas"
            refined = regions[~is_atlas]
            regions = regions[is_atlas].reset_index(drop=True)
    comp = _read_optional_tsv(deriv_dir / "group" / "group_comparison.tsv")
    failed = _read_optional_tsv(deriv_dir / "group" / "failed.tsv")
    ignored = _read_optional_tsv(deriv_dir / "group" / "ignored.tsv")
    subjects = _subjects(deriv_dir)
    statistic = (config.get("group_comparison") or {}).get("statistic", "mean")
    reference = (config.get("group_comparison") or {}).get("reference_group", "control")
    body: list[str] = []
    nav: list[tuple[str, str]] = []

    def section(anchor: str, title: str) -> None:
        nav.append((anchor, title))
        body.append(f'<h2 id="{anchor}">{_e(title)}</h2>')

    # Summary
    section("summary", "Summary")
    n_subjects = regions["participant_id"].nunique() if regions is not None and \
        "participant_id" in regions else len({s["key"].split("_")[0] for s in subjects})
    maps = list(dict.fromkeys(regions["map"])) if regions is not None and "map" in regions \
        else list(config.get("maps") or [])
    groups = _group_order(regions, reference) if regions is not None else []
    kv = [("subjects in the tables", n_subjects),
          ("subject sessions with registration", len(subjects)),
          ("maps", ", ".join(f"{m} ({_MAP_UNITS.get(m, '?')})" for m in maps) or "none"),
          ("groups", ", ".join(
              f"{g} (n={regions.loc[regions['group'] == g, 'participant_id'].nunique()})"
              for g in groups) if regions is not None else "n/a"),
          ("failed subjects", 0 if failed is None else len(failed)),
          ("ignored files", 0 if ignored is None else len(ignored)),
          ("input", config.get("bids_dir") or "brainiron phantom"),
          ("report written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
          ("brainiron", __version__)]
    body.append('<table class="data kv" id="summary-table"><tbody>' + "".join(
        f"<tr><td>{_e(k)}</td><td class='t'>{_e(_fmt(v))}</td></tr>" for k, v in kv)
        + "</tbody></table>")
    if regions is None:
        body.append('<p class="bad">group/regions.tsv is missing or unreadable: no tables '
                    "or group figures. Did the workflow finish?</p>")
    if failed is not None and len(failed):
        body.append('<p class="bad">Subjects that could not be processed:</p>')
        body.append(_html_table(failed, "failed-table", text_columns=list(failed.columns)))
    if ignored is not None and len(ignored):
        body.append("<details><summary>Ignored files</summary>"
                    + _html_table(ignored, "ignored-table", text_columns=list(ignored.columns))
                    + "</details>")
    if subjects:
        qc_rows = []
        for s in subjects:
            qc = s["qc"]
            row = {"subject": s["key"], "registration image": qc.get("registration_image"),
                   "NCC": qc.get("ncc"), "seconds": qc.get("seconds")}
            if regions is not None:
                pid = s["key"].split("_ses-")[0]
                info = regions[regions["participant_id"] == pid]
                for c in ("group", "age", "sex"):
                    if c in info:
                        row[c] = info[c].iloc[0] if len(info) else None
            qc_rows.append(row)
        qc_table = pd.DataFrame(qc_rows)
        body.append("<h3>Registration quality</h3><p class='small'>NCC: normalised "
                    "cross-correlation of the registration image with the warped template "
                    "inside the brain (1 = identical). Compare subjects with one another: a "
                    "subject well below the others deserves a look at its overlays.</p>")
        body.append(_html_table(qc_table, "qc-table",
                                text_columns=["subject", "registration image", "group", "sex"]))
    if refined is not None and len(refined) and regions is not None:
        body.append("<h3>Contrast-aware refinement</h3>" + _refinement_note(regions, refined))

    # Group comparison
    section("comparison", "Group comparison")
    if comp is None:
        body.append('<p class="note">No group/group_comparison.tsv: section skipped.</p>')
    elif comp.empty:
        body.append('<p class="note">The group comparison table is empty (one group only, or '
                    "too few subjects).</p>")
    else:
        p_col = comp["p_fdr"] if "p_fdr" in comp else pd.Series(np.nan, index=comp.index)
        sig = pd.to_numeric(p_col, errors="coerce").lt(0.05).reset_index(drop=True)
        p_num = pd.to_numeric(p_col, errors="coerce")
        body.append(f"<p>{len(comp)} comparisons: {int(sig.sum())} with FDR-adjusted p &lt; "
                    f"0.05 (highlighted), {int(p_num.isna().sum())} without a p-value (too few "
                    "subjects for the model's covariates, or a group without values).</p>"
                    "<p class='small'>Difference = group − reference, adjusted for the "
                    "covariates, with its 95 % CI; units per row.</p>")
        shown = _comparison_display(comp)
        body.append(_html_table(shown, "comparison-table", highlight=sig, scroll=True,
                                text_columns=[c for c in shown.columns if c in (
                                    "outcome", "map", "units", "region", "hemisphere",
                                    "comparison", "covariates")]))

    # Regional summary
    section("regions", "Regional summary")
    if regions is not None and statistic in regions:
        table = _summary_table(regions, statistic, groups)
        body.append(f"<p class='small'>Regional {_e(statistic)} (in the map's units): mean ± "
                    "SD across subjects (n) by group.</p>")
        body.append(_html_table(table, "region-table", scroll=True,
                                text_columns=["map", "units", "region", "hemisphere"]))
        if "iron_mg_per_kg" in regions and regions["iron_mg_per_kg"].notna().any():
            iron = _summary_table(regions, statistic, groups, value="iron_mg_per_kg")
            body.append("<h3>Iron by group (mg/kg wet tissue)</h3><p class='small'>Mean ± SD "
                        "(n) of iron_mg_per_kg; mean z: age-normative z-score (Hallgren & "
                        "Sourander); valid: the calibration holds in the region.</p>")
            body.append(_html_table(iron, "iron-table", scroll=True, text_columns=[
                "map", "units", "region", "hemisphere", "calibration", "valid"]))
        else:
            body.append('<p class="note">No iron columns in regions.tsv: iron table skipped.'
                        "</p>")
    else:
        body.append('<p class="note">No regional table.</p>')

    # Group figures
    section("figures", "Group figures")
    if regions is not None:
        made = group_figures(regions, figs, statistic=statistic, reference_group=reference)
        for name, png in made.items():
            map_name, _, what = name.partition("_")
            heading = (f"{_map_label(map_name)}: iron versus age" if what == "iron_age" else
                       f"{_map_label(map_name)}: regional {what} by group")
            body.append(f'<h3 id="figure-{_e(name)}">{_e(heading)}</h3>' + _img_tag(png, name))
        if not any(k.endswith("_iron_age") for k in made):
            body.append('<p class="note">No iron or age values in regions.tsv: iron-versus-'
                        "age figures skipped.</p>")
        if not made:
            body.append('<p class="note">No values to plot.</p>')

    # Phantom truth
    if phantom_truth is not None:
        section("phantom", "Phantom ground truth")
        truth = _truth_tables(Path(phantom_truth))
        merged = _truth_comparison(regions, truth) if truth is not None and \
            regions is not None else None
        if merged is None or merged.empty:
            body.append('<p class="note">No phantom truth tables matched the regional table.'
                        "</p>")
        else:
            body.append("<p class='small'>Measured regional mean (this pipeline: registered "
                        "atlas labels) versus the phantom's true value in the true labels.</p>")
            body.append(_html_table(_truth_summary(merged), "truth-table",
                                    text_columns=["quantity"]))
            png = _save_figure(_truth_figure(merged), figs / "phantom_truth.png", 80)
            body.append(_img_tag(png, "phantom truth"))

    # Subjects
    section("subjects", "Subjects")
    if not subjects:
        body.append('<p class="note">No subject with a registration QC file.</p>')
    for s in subjects:
        body.append(_subject_section(s, regions, config, bids, figs, overlays))

    # Methods, configuration, software
    section("methods", "Methods")
    methods, refs, _ = _methods(regions, comp, config, subjects)
    body.append(methods)
    body.append('<h3>References</h3><ol id="references">' + "".join(
        f"<li id='ref-{i + 1}'>{_e(text)}</li>" for i, text in enumerate(refs.values()))
        + "</ol>")
    section("configuration", "Configuration")
    body.append('<p class="small">From dataset_description.json (GeneratedBy '
                "Configuration), unless given to the report.</p>"
                f'<pre id="configuration-text">{_e(_pretty_json(config))}</pre>')
    section("software", "Software")
    versions = pd.DataFrame(list(_versions().items()), columns=["package", "version"])
    body.append(_html_table(versions, "software-table", text_columns=["package", "version"]))

    nav_html = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>"
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>brainiron report</title><style>{_CSS}</style>"
        f"<script>{_SCRIPT}</script></head><body><main>"
        f"<h1>brainiron report</h1><p class='small'>Regional brain iron from QSM χ (ppm) and "
        f"R2* (1/s) maps · {_e(deriv_dir.name)}</p>"
        f"{nav_html}{''.join(body)}</main></body></html>\n")
    return write_text(page, out_html)


def _suffix(path: Path) -> str | None:
    try:
        return parse_name(path)[1]
    except ValueError:
        return None


def _subject_section(s: dict, regions: pd.DataFrame | None, config: Mapping,
                     bids: Path | None, figs: Path, overlays: bool) -> str:
    key = s["key"]
    qc = s["qc"]
    out = [f'<section class="subject" id="{_e(key)}"><h3>{_e(key)}</h3>']
    facts = [("registration image", qc.get("registration_image")),
             ("registration file", Path(str(qc.get("registration_image_path") or "n/a")).name),
             ("NCC", qc.get("ncc")), ("seconds", qc.get("seconds")),
             ("template", qc.get("template"))]
    settings = qc.get("settings") or {}
    if settings:
        facts.append(("transform", f"{settings.get('transform')} ({settings.get('syn_metric')})"))
    out.append('<table class="data kv"><tbody>' + "".join(
        f"<tr><td>{_e(k)}</td><td class='t'>{_e(_fmt(v))}</td></tr>" for k, v in facts)
        + "</tbody></table>")
    voxels = qc.get("label_voxels") or {}
    if voxels:
        empty = [n for n, v in voxels.items() if not v and not n.startswith("DN")]
        if empty:
            out.append(f'<p class="bad">No voxel labelled for: {_e(", ".join(empty))}</p>')
        out.append("<details><summary>Labelled voxels per nucleus</summary>"
                   + _html_table(pd.DataFrame([voxels]), f"voxels-{key}") + "</details>")
    if not overlays:
        return "".join(out) + "</section>"
    if not s["dseg"].is_file():
        out.append(f'<p class="note">Label image {_e(s["dseg"].name)} missing: no overlays.</p>')
        return "".join(out) + "</section>"
    backgrounds: list[tuple[str, str, Path | None, str | None]] = []
    reg_path = _locate(qc.get("registration_image_path"), s, bids)
    kind = qc.get("registration_image") or "registration"
    backgrounds.append(("registration", f"registration image ({kind})", reg_path,
                        _MAP_UNITS.get(kind)))
    for map_name, src in _subject_maps(s, regions, config.get("maps") or []).items():
        path = _locate(src, s, bids)
        if path is not None and reg_path is not None and path.resolve() == reg_path.resolve():
            continue
        shown = _suffix(path) if path is not None else None
        if shown not in _MAP_UNITS:  # e.g. R2* quantified from a T2starmap: show the T2* map
            shown = map_name
        backgrounds.append((shown, _map_label(shown), path, _MAP_UNITS.get(shown)))
    cuts = None
    for slug, label, path, units in backgrounds:
        if path is None:
            out.append(f'<p class="note">{_e(label)}: image not found (pass bids_dir if the '
                       "dataset moved).</p>")
            continue
        png = figs / f"{key}_desc-{re.sub(r'[^A-Za-z0-9]', '', slug)}_overlay.png"
        try:
            if cuts is None:
                cuts = nuclei_cut_coords(s["dseg"])
            subject_overlays(path, s["dseg"], png, title=f"{key} · {label}", cut_coords=cuts,
                             units=units)
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the report
            out.append(f'<p class="bad">{_e(label)}: overlay failed ({_e(exc)})</p>')
            continue
        out.append(f"<p class='small'>{_e(label)}: {_e(path.name)}</p>"
                   + _img_tag(png, f"{key} {label}"))
    return "".join(out) + "</section>"

