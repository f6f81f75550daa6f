"""The report's summaries and names: group order, regional summaries, comparison, truth.

Data shaping only (DataFrames in, DataFrames or text out); :mod:`brainiron.report.html`
renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atlas
from ..io import read_tsv
from .html import fmt

__all__ = [
    "MAP_TITLES",
    "MAP_UNITS",
    "comparison_display",
    "group_order",
    "map_label",
    "pm",
    "read_optional_tsv",
    "read_truth_tables",
    "refinement_rows",
    "region_order",
    "split_segmentation",
    "summary_table",
    "truth_comparison",
    "truth_summary",
    "with_group",
]

#: Display name of each map or registration image kind.
MAP_TITLES = {"Chimap": "χ (QSM)", "R2starmap": "R2*", "T2starmap": "T2*", "T1w": "T1w",
              "MEGRE": "GRE magnitude"}
#: Units of each quantitative map.
MAP_UNITS = {"Chimap": "ppm", "R2starmap": "1/s", "T2starmap": "s"}


def map_label(map_name: str) -> str:
    """Display name of a map (``Chimap`` → ``χ (QSM)``); unknown names unchanged."""
    return MAP_TITLES.get(map_name, map_name)


def region_order(table: pd.DataFrame) -> list[str]:
    """The table's regions in brainiron's order (``regions.tsv``), unknown ones last."""
    known = list(dict.fromkeys(atlas.region_table()["region"]))
    present = list(dict.fromkeys(table["region"].astype(str)))
    return [r for r in known if r in present] + [r for r in present if r not in known]


def group_order(table: pd.DataFrame, reference: str | None = "control") -> list[str]:
    """The table's groups, sorted, with the reference group first."""
    groups = sorted(set(table["group"].dropna().astype(str)))
    if reference in groups:
        groups.remove(reference)
        groups.insert(0, reference)
    return groups


def with_group(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with a text ``group`` column (``all`` when there is none, ``n/a`` if empty)."""
    out = table.copy()
    if "group" not in out:
        out["group"] = "all"
    out["group"] = out["group"].astype(object).where(out["group"].notna(), "n/a").astype(str)
    return out


def split_segmentation(regions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(atlas rows, refined rows)`` of a regional table with a ``segmentation`` column.

    Figures and summaries use the atlas rows; without the column every row is an atlas row
    and the refined part is ``None``.
    """
    if "segmentation" not in regions:
        return regions, None
    is_atlas = regions["segmentation"].fillna("atlas") == "atlas"
    return regions[is_atlas].reset_index(drop=True), regions[~is_atlas]


def refinement_rows(atlas_rows: pd.DataFrame, refined: pd.DataFrame) -> pd.DataFrame:
    """Voxels and mean (map units) of each refined region with the atlas labels and after
    refinement, one row per subject × map × region × hemisphere."""
    keys = ["participant_id", "session_id", "map", "region", "hemisphere"]
    cols = keys + ["n_voxels", "mean"]
    refined = refined.assign(session_id=refined["session_id"].fillna(""))
    atlas_rows = atlas_rows.assign(session_id=atlas_rows["session_id"].fillna(""))
    both = refined[cols].merge(atlas_rows[cols], on=keys, suffixes=(" refined", " atlas"))
    return both[keys + ["n_voxels atlas", "n_voxels refined", "mean atlas", "mean refined"]]


def pm(mean, sd, n=None) -> str:
    """``mean ± SD (n=…)`` with 4 and 2 significant digits; ``n/a`` for a missing mean."""
    if not np.isfinite(mean):
        return "n/a"
    text = f"{mean:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{mean:.4g}"
    return f"{text} (n={n})" if n is not None else text


def summary_table(regions: pd.DataFrame, statistic: str, groups: list[str],
                  value: str | None = None) -> pd.DataFrame:
    """Rows map × region × hemisphere; one column per group: mean ± SD (n) of ``value``."""
    value = value or statistic
    df = regions[regions[value].notna()]
    order = {r: i for i, r in enumerate(region_order(df))}
    rows = []
    for (map_name, region, hemi), d in df.groupby(["map", "region", "hemisphere"], sort=False):
        row = {"map": map_name, "units": d["units"].iloc[0] if value == statistic else "mg/kg",
               "region": region, "hemisphere": hemi}
        for group in groups:
            v = d.loc[d["group"] == group, value].to_numpy(float)
            v = v[np.isfinite(v)]
            row[group] = pm(v.mean(), v.std(ddof=1) if v.size > 1 else np.nan, v.size) \
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


def comparison_display(comp: pd.DataFrame) -> pd.DataFrame:
    """The group comparison table as shown: comparison, n, mean ± SD, difference [95% CI],
    p, p_fdr, Cohen's d and covariates (``group/group_comparison.tsv`` columns in)."""
    cols = {}
    for c in ("outcome", "map", "units", "region", "hemisphere"):
        if c in comp:
            cols[c] = comp[c]
    cols["comparison"] = comp.get("group", pd.Series("", index=comp.index)).astype(str) + \
        " − " + comp.get("reference_group", pd.Series("", index=comp.index)).astype(str)
    if {"n_group", "n_reference"} <= set(comp.columns):
        cols["n"] = [f"{fmt(g)} / {fmt(r)}" for g, r in zip(comp["n_group"],
                                                            comp["n_reference"], strict=True)]
    for who in ("reference", "group"):
        if f"mean_{who}" in comp:
            cols[f"mean ± SD ({who})"] = [pm(float(m), float(s)) for m, s in zip(
                comp[f"mean_{who}"], comp.get(f"sd_{who}", np.nan), strict=False)]
    if "difference" in comp:
        cols["difference [95% CI]"] = [
            "n/a" if not np.isfinite(float(d)) else f"{float(d):.4g} [{fmt(lo)}, {fmt(hi)}]"
            for d, lo, hi in zip(comp["difference"], comp.get("ci_low", np.nan),
                                 comp.get("ci_high", np.nan), strict=False)]
    for c in ("p", "p_fdr", "cohens_d", "covariates"):
        if c in comp:
            cols[c] = comp[c]
    return pd.DataFrame(cols).reset_index(drop=True)


def read_optional_tsv(path) -> pd.DataFrame | None:
    """A group table, or ``None`` when the path is ``None``, missing or unreadable."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return read_tsv(path, dtype={"session_id": str, "participant_id": str})
    except Exception:  # noqa: BLE001 - an unreadable optional table is reported as missing
        return None


def read_truth_tables(paths: Sequence) -> pd.DataFrame | None:
    """The phantom's per-subject truth tables (``*_desc-truth_regions.tsv``) in one table;
    ``None`` when none of the paths exists."""
    files = [Path(p) for p in paths if Path(p).is_file()]
    if not files:
        return None
    return pd.concat([read_tsv(f, dtype={"participant_id": str}) for f in files],
                     ignore_index=True)


def truth_comparison(regions: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
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


def truth_summary(merged: pd.DataFrame) -> pd.DataFrame:
    """Per quantity: n, mean error, mean and max absolute error (the quantity's units) and
    the correlation r of measured with true values."""
    rows = []
    for q, d in merged.groupby("quantity", sort=False):
        err = d["measured"] - d["true"]
        r = float(np.corrcoef(d["true"], d["measured"])[0, 1]) if len(d) > 2 else np.nan
        rows.append({"quantity": q, "n": len(d), "mean error": err.mean(),
                     "mean |error|": err.abs().mean(), "max |error|": err.abs().max(),
                     "r": r})
    return pd.DataFrame(rows)

