"""From χ and R2* to iron (mg/kg wet tissue), and from iron to age-normative z-scores.

Calibrations are lines ``value = slope · Fe + intercept`` from the literature, kept with their
citations and confidence marks in ``data/calibrations.tsv`` (see :func:`brainiron.norms.
calibrations`). For R2* the iron-dependent part grows linearly with the field strength
(Yao et al. 2009; Li et al. 2009), so the slope measured at ``field_strength_T`` is rescaled
to the acquisition's B0; χ in ppm does not depend on B0.

Iron is reported in mg per kg wet (fresh) tissue, the unit of Hallgren & Sourander's norms.
Regions where a calibration is known not to hold (thalamus, white matter: myelin raises R2*
and lowers χ) are converted but flagged ``calibration_valid = False``.

References
----------
.. [1] Langkammer C et al. (2010) Quantitative MR imaging of brain iron: a postmortem
   validation study. Radiology 257:455-462.
.. [2] Langkammer C et al. (2012) Quantitative susceptibility mapping (QSM) as a means to
   measure brain iron? A post mortem validation study. NeuroImage 62:1593-1599.
.. [3] Gelman N et al. (1999) MR imaging of human brain at 3.0 T: preliminary report on
   transverse relaxation rates and relation to estimated iron content. Radiology 210:759-767.
.. [4] Hallgren B, Sourander P (1958) The effect of age on the non-haemin iron in the human
   brain. J Neurochem 3:41-51.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from . import atlas, norms
from .settings import IronSettings

__all__ = [
    "DEFAULT_CALIBRATIONS",
    "add_iron",
    "add_norms",
    "describe",
    "iron_from_value",
    "value_from_iron",
]

#: Calibration used per map unless the configuration names another (``iron.calibrations``).
#: Map suffix → calibration name used when the configuration names none (the defaults of
#: :class:`brainiron.settings.IronSettings`).
DEFAULT_CALIBRATIONS = dict(IronSettings().calibrations)


def _scales_with_field(calibration: Mapping) -> bool:
    return str(calibration.get("scale_with_field", "no")).lower() in ("yes", "true", "1")


def _effective_slope(calibration: Mapping, field_strength_T) -> np.ndarray:
    """Slope at the acquisition's B0 (map units per mg/kg)."""
    slope = float(calibration["slope"])
    if _scales_with_field(calibration):
        return slope * np.asarray(field_strength_T, float) / float(calibration["field_strength_T"])
    return slope * np.ones_like(np.asarray(field_strength_T, float))


def value_from_iron(iron_mg_per_kg, calibration: Mapping, field_strength_T=3.0) -> np.ndarray:
    """The map value (ppm or 1/s) a calibration predicts for an iron concentration (mg/kg)."""
    return _effective_slope(calibration, field_strength_T) * np.asarray(iron_mg_per_kg, float) \
        + float(calibration["intercept"])


def iron_from_value(value, calibration: Mapping, field_strength_T=3.0, value_se=0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Invert a calibration line: iron (mg/kg) and its standard uncertainty.

    Parameters
    ----------
    value : array_like
        Regional χ (ppm) or R2* (1/s).
    calibration : mapping
        A row of :func:`brainiron.norms.calibrations` (``slope``, ``intercept``, optional
        ``slope_se``, ``intercept_se``, ``field_strength_T``, ``scale_with_field``).
    field_strength_T : array_like
        B0 of each value (T).
    value_se : array_like
        Standard error of each value (e.g. SD/√n of the region), in the map's units.

    Returns
    -------
    iron : ndarray
        mg/kg wet weight.
    iron_sd : ndarray
        Propagated standard uncertainty (mg/kg): the value's SE plus the calibration's stated
        slope and intercept SEs (first order; missing SEs count as zero).
    """
    slope = _effective_slope(calibration, field_strength_T)
    intercept = float(calibration["intercept"])
    value = np.asarray(value, float)
    iron = (value - intercept) / slope
    rel_slope = _se(calibration, "slope_se") / float(calibration["slope"])
    intercept_se = _se(calibration, "intercept_se")
    var = (np.asarray(value_se, float) / slope) ** 2 + (intercept_se / slope) ** 2 \
        + (iron * rel_slope) ** 2
    return iron, np.sqrt(var)


def _se(calibration: Mapping, key: str) -> float:
    value = calibration.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if np.isnan(value) else value


def add_iron(table: pd.DataFrame, calibrations: Mapping[str, str] | None = None,
             statistic: str = "mean", field_strength_T: float | None = None,
             calibration_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add iron columns to a regional table (one row per map × region × hemisphere).

    Parameters
    ----------
    table : DataFrame
        With ``map``, ``region``, ``statistic`` (e.g. ``mean``), ``sd``, ``n_valid`` and
        optionally ``field_strength_T``.
    calibrations : mapping
        Map suffix → calibration name (default :data:`DEFAULT_CALIBRATIONS`).
    statistic : str
        The regional statistic converted (``mean`` or ``median``).
    field_strength_T : float, optional
        B0 (T) for rows without a ``field_strength_T`` value. χ calibrations do not scale
        with B0, so χ rows may have none; a row whose calibration scales with B0 (R2*) and
        has no B0 is an error, never a silent default.

    Returns
    -------
    DataFrame
        A copy with ``calibration``, ``calibration_mark``, ``calibration_valid``,
        ``iron_mg_per_kg`` and ``iron_sd_mg_per_kg``. Rows of maps without a calibration
        get empty cells.
    """
    cal_table = norms.calibrations() if calibration_table is None else calibration_table
    chosen = {**DEFAULT_CALIBRATIONS, **(calibrations or {})}
    out = table.copy()
    for col in ("calibration", "calibration_mark"):
        out[col] = pd.Series([None] * len(out), index=out.index, dtype=object)
    out["calibration_valid"] = pd.Series([pd.NA] * len(out), index=out.index, dtype="boolean")
    out["iron_mg_per_kg"] = np.nan
    out["iron_sd_mg_per_kg"] = np.nan
    fallback = np.nan if field_strength_T is None else float(field_strength_T)
    b0 = (pd.to_numeric(out["field_strength_T"], errors="coerce").fillna(fallback)
          if "field_strength_T" in out else pd.Series(fallback, index=out.index)
          ).to_numpy(float)
    for map_name, cal_name in chosen.items():
        rows = (out["map"] == map_name).to_numpy()
        if not rows.any() or not cal_name:
            continue
        if cal_name not in cal_table.index:
            raise KeyError(f"unknown calibration {cal_name!r}; choose from "
                           f"{', '.join(cal_table.index)}")
        cal = cal_table.loc[cal_name]
        if cal["map"] != map_name:
            raise ValueError(f"calibration {cal_name} is for {cal['map']}, not {map_name}")
        if _scales_with_field(cal) and np.isnan(b0[rows]).any():
            who = out.loc[rows & np.isnan(b0), "participant_id"] if "participant_id" in out \
                else pd.Series(["?"])
            raise ValueError(f"calibration {cal_name} scales with B0 but the field strength of "
                             f"{who.iloc[0]} is not stated (MagneticFieldStrength in the "
                             "sidecars, or field_strength in the configuration)")
        n = out.loc[rows, "n_valid"].to_numpy(float)
        se = out.loc[rows, "sd"].to_numpy(float) / np.sqrt(np.where(n > 0, n, np.nan))
        iron, iron_sd = iron_from_value(out.loc[rows, statistic].to_numpy(float), cal, b0[rows],
                                        np.nan_to_num(se))
        invalid = set(str(cal.get("invalid_regions") or "").split(";")) - {""}
        out.loc[rows, "calibration"] = cal_name
        out.loc[rows, "calibration_mark"] = str(cal["mark"])
        out.loc[rows, "calibration_valid"] = ~out.loc[rows, "region"].isin(invalid).to_numpy()
        out.loc[rows, "iron_mg_per_kg"] = iron
        out.loc[rows, "iron_sd_mg_per_kg"] = iron_sd
    return out


def add_norms(table: pd.DataFrame, norms_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add the age-expected iron and a z-score to rows with ``iron_mg_per_kg`` and ``age``.

    ``iron_expected_mg_per_kg = a · (1 − exp(−b · age)) + c`` for the region's norm
    (``norm_region`` of the region table: SNc_PBP_VTA and SNr use SN, GPe and GPi use GP);
    ``iron_z = (iron − expected) / sd``. Rows without an age or a norm get empty cells.
    """
    norms_table = norms.iron_norms() if norms_table is None else norms_table
    out = table.copy()
    regions = atlas.region_table().drop_duplicates("region").set_index("region")["norm_region"]
    norm_region = out["region"].map(regions)
    age = pd.to_numeric(out["age"], errors="coerce") if "age" in out else pd.Series(
        np.nan, index=out.index)
    expected = np.full(len(out), np.nan)
    sd = np.full(len(out), np.nan)
    source = pd.Series([None] * len(out), index=out.index, dtype=object)
    for name in norm_region.dropna().unique():
        if name not in norms_table.index:
            continue
        rows = (norm_region == name).to_numpy()
        expected[rows] = norms.expected_iron(name, age.to_numpy(float)[rows], norms_table)
        sd[rows] = float(norms_table.loc[name, "sd_mg_per_kg"])
        source[rows] = f"{norms_table.loc[name, 'source']} ({norms_table.loc[name, 'mark']})"
    out["norm_region"] = norm_region
    out["iron_expected_mg_per_kg"] = expected
    iron = out["iron_mg_per_kg"] if "iron_mg_per_kg" in out else np.nan
    out["iron_z"] = (iron - expected) / sd
    out["norm_source"] = source
    return out


def _calibration_text(name: str, cal_table: pd.DataFrame) -> str:
    if name not in cal_table.index:
        return f"{name} (not in brainiron's calibration table)"
    row = cal_table.loc[name]
    sign = "−" if float(row["intercept"]) < 0 else "+"
    return (f"{name} ({row['map']} = {row['slope']:g} · Fe {sign} "
            f"{abs(float(row['intercept'])):g} {row['units']}, {row['setting']}, "
            f"{row['field_strength_T']:g} T; constants marked {row['mark']}) [@cal:{name}]")


def describe(calibrations: Sequence[str], statistic: str) -> str:
    """Methods text of the iron estimate (plain text, citation markers ``[@key]``).

    Each calibration is cited as ``[@cal:<name>]``: its citation stays beside its constants
    in ``data/calibrations.tsv`` (:func:`brainiron.references.reference` resolves it).

    Parameters
    ----------
    calibrations : sequence of str
        Names of the calibrations used (``data/calibrations.tsv``), in the tables' order.
    statistic : str
        Regional statistic converted to iron (``mean`` or ``median``).

    Returns
    -------
    str
        The iron and age-norm sentences of the report's methods paragraph.
    """
    cal_table = norms.calibrations()
    texts = "; ".join(_calibration_text(name, cal_table) for name in calibrations)
    return (f"Iron (mg/kg wet tissue) was estimated from the regional {statistic} through the "
            f"calibration lines {texts}; R2* slopes are rescaled to the field strength (marks: "
            "V read in the source, V2 read in a secondary source, R from memory of the paper, "
            "D derived by brainiron). Calibrations are not valid in the thalamus and white "
            "matter (myelin); such rows are flagged. Age-expected iron follows the exponential "
            "model of Hallgren & Sourander [@hallgren], Fe = a·(1 − exp(−b·age)) + c, and "
            "z-scores use its between-subject SD.")
