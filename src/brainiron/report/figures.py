"""Group figures of the report: regional values by group, iron versus age, phantom truth.

:func:`group_figures` draws, per map, each region's statistic by group (box and points, left
and right hemisphere side by side) and, when the table has iron columns, iron versus age with
the age-normative curve of Hallgren & Sourander; :func:`truth_figure` draws a phantom's
measured regional values against its ground truth.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import atlas, norms
from ..io import atomic_path
from .summaries import group_order, map_label, region_order, with_group

__all__ = ["GROUP_COLOURS", "group_figures", "save_figure", "truth_figure"]

#: Colour of each group, in group order (the reference group first).
GROUP_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def save_figure(fig: Figure, path: Path, dpi: int) -> Path:
    """Write a figure as PNG (atomically, white background); return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return path



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
    table = with_group(regions)
    out: dict[str, Path] = {}
    if table.empty or statistic not in table:
        return out
    groups = group_order(table, reference_group)
    for map_name in dict.fromkeys(table["map"].astype(str)):
        sub = table[(table["map"] == map_name) & table[statistic].notna()]
        if sub.empty:
            continue
        units = str(sub["units"].iloc[0]) if "units" in sub else ""
        fig = _box_figure(sub, groups, statistic, map_name, units)
        out[f"{map_name}_{statistic}"] = save_figure(
            fig, out_dir / _figure_name(map_name, statistic), dpi)
        if {"iron_mg_per_kg", "age"} <= set(sub.columns):
            iron = sub[sub["iron_mg_per_kg"].notna() & pd.to_numeric(sub["age"],
                                                                      errors="coerce").notna()]
            if not iron.empty:
                fig = _iron_age_figure(iron, groups, map_name)
                if fig is not None:
                    out[f"{map_name}_iron_age"] = save_figure(
                        fig, out_dir / _figure_name(map_name, "iron_age"), dpi)
    return out


def _figure_name(map_name: str, what: str) -> str:
    """``group_desc-<map>_<what>.png`` (``what`` without separators): BIDS tools read the map
    as the ``desc`` entity and the figure kind as the suffix."""
    return f"group_desc-{map_name}_{re.sub(r'[^A-Za-z0-9]', '', what)}.png"


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
    regions = region_order(sub)
    hemis = [h for h in ("L", "R") if h in set(sub["hemisphere"].astype(str))] or \
        sorted(set(sub["hemisphere"].astype(str)))
    fig, axes = _panel_grid(len(regions))
    rng = np.random.default_rng(0)
    gap = 0.8
    for ax, region in zip(axes, regions, strict=False):
        pos, ticks, labels = 0.0, [], []
        for g, group in enumerate(groups):
            colour = GROUP_COLOURS[g % len(GROUP_COLOURS)]
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
    handles = [Patch(facecolor=GROUP_COLOURS[g % len(GROUP_COLOURS)], alpha=0.6,
                     label=f"{group} (n={ids[sub['group'] == group].nunique()})")
               for g, group in enumerate(groups)]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False,
               fontsize=9, bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{map_label(map_name)}: regional {statistic} ({units}) by group; "
                 "L and R hemisphere side by side", x=0.01, y=0.995, ha="left", va="top",
                 fontsize=11)
    return fig


def _norm_regions() -> dict[str, str]:
    table = atlas.region_table().drop_duplicates("region")
    return dict(zip(table["region"], table["norm_region"], strict=True))


def _iron_age_figure(sub: pd.DataFrame, groups: list[str], map_name: str) -> Figure | None:
    norm_of = _norm_regions()
    norm_table = norms.iron_norms()
    regions = region_order(sub)
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
            colour = GROUP_COLOURS[g % len(GROUP_COLOURS)]
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
    handles = [Patch(color=GROUP_COLOURS[g % len(GROUP_COLOURS)], label=group)
               for g, group in enumerate(groups)]
    handles += [Line2D([], [], marker="o", ls="", color="0.3", label="L"),
                Line2D([], [], marker="^", ls="", color="0.3", label="R"),
                Patch(color="0.6", alpha=0.4, label="norm ± 1 SD")]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False,
               fontsize=9, bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"Iron from {map_label(map_name)} ({cal}) versus age; line: Hallgren & "
                 "Sourander norm", x=0.01, y=0.995, ha="left", va="top", fontsize=11)
    return fig


def truth_figure(merged: pd.DataFrame) -> Figure:
    """Measured versus true regional values of a phantom, one panel per quantity.

    Parameters
    ----------
    merged : DataFrame
        ``quantity, true, measured`` (one row per subject × region × hemisphere, in the
        quantity's units; :func:`brainiron.report.summaries.truth_comparison`).

    Returns
    -------
    Figure
        Points and the identity line, one panel per quantity.
    """
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
