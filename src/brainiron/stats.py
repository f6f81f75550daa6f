"""Group comparison of regional values with age (and sex) as covariates.

For every map × region × hemisphere, an ordinary least-squares model (statsmodels)

    value ~ C(group, Treatment(reference)) + age + C(sex)

gives each group's difference from the reference group adjusted for the covariates, with its
95 % confidence interval and p-value; Benjamini–Hochberg adjusts the p-values across the
regions and hemispheres of each map (and outcome). The same model runs on the map's values
(ppm or 1/s) and, when present, on iron (mg/kg).

Effect size: Cohen's d of the adjusted difference, ``difference / sqrt(residual variance)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["describe", "group_comparison"]

_OUTCOMES = {"value": None, "iron_mg_per_kg": "mg/kg"}


def _usable_covariates(data: pd.DataFrame, covariates: list[str]) -> list[str]:
    """Covariates present, complete and not constant, in the order given."""
    return [c for c in covariates
            if c in data and not data[c].isna().any() and data[c].nunique() > 1]


def _term(data: pd.DataFrame, cov: str) -> str:
    numeric = pd.api.types.is_numeric_dtype(data[cov]) and not pd.api.types.is_bool_dtype(
        data[cov])
    return cov if numeric else f"C({cov})"


def _model_rows(data: pd.DataFrame, outcome: str, reference: str, covariates: list[str]):
    """Fit one OLS model; yield a result dict per non-reference group.

    Covariates are dropped from the end of the list while the model would keep fewer than
    2 residual degrees of freedom (tiny samples); ``covariates`` says what was used.
    """
    import statsmodels.formula.api as smf

    groups = sorted(data["group"].unique(), key=lambda g: (g != reference, g))
    used = _usable_covariates(data, covariates)

    def n_params(covs):
        return len(groups) + sum(data[c].nunique() - 1 if _term(data, c).startswith("C(")
                                 else 1 for c in covs)

    while used and len(data) - n_params(used) < 2:
        used = used[:-1]
    group_term = f"C(group, Treatment({reference!r}))"
    formula = "y ~ " + " + ".join([group_term, *(_term(data, c) for c in used)])
    frame = data.assign(y=data[outcome].astype(float))
    fit = None
    if len(frame) - n_params(used) >= 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = smf.ols(formula, data=frame).fit()
    ref = frame[frame["group"] == reference]["y"]
    for group in groups[1:]:
        other = frame[frame["group"] == group]["y"]
        row = {
            "reference_group": reference, "group": group,
            "n_reference": int(ref.size), "n_group": int(other.size),
            "mean_reference": ref.mean(), "sd_reference": ref.std(ddof=1),
            "mean_group": other.mean(), "sd_group": other.std(ddof=1),
            "difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan,
            "cohens_d": np.nan, "covariates": "+".join(used) or "none",
        }
        name = f"{group_term}[T.{group}]"
        if fit is not None and name in fit.params.index and fit.df_resid > 0:
            low, high = fit.conf_int(alpha=0.05).loc[name]
            row.update(difference=fit.params[name], ci_low=low, ci_high=high,
                       p=fit.pvalues[name], cohens_d=fit.params[name] / np.sqrt(fit.scale))
        yield row


def group_comparison(regions: pd.DataFrame, reference_group: str | None = "control",
                     covariates: Sequence[str] = ("age", "sex"), statistic: str = "mean"
                     ) -> pd.DataFrame:
    """Compare groups region by region.

    Parameters
    ----------
    regions : DataFrame
        The long regional table with ``participant_id, map, units, region, hemisphere,
        group`` and the covariates; ``statistic`` is the outcome (map units), and
        ``iron_mg_per_kg`` a second outcome when present. With a ``segmentation`` column only
        the ``atlas`` rows are compared.
    reference_group : str, optional
        The group others are compared with (default ``control``; when absent, the first group
        in alphabetical order).
    covariates : sequence of str
        Columns adjusted for when present, complete and not constant; with too few subjects
        for all of them (< 2 residual degrees of freedom), the last ones are dropped.
    statistic : str
        The regional statistic compared (``mean`` or ``median``).

    Returns
    -------
    DataFrame
        One row per outcome × map × region × hemisphere × non-reference group:
        ``outcome, map, units, region, hemisphere, reference_group, group, n_reference,
        n_group, mean_reference, sd_reference, mean_group, sd_group, difference, ci_low,
        ci_high, p, p_fdr, cohens_d, covariates``. ``difference`` is group − reference,
        adjusted; ``units`` are those of the outcome. Empty when there is no ``group`` column
        or fewer than two groups.
    """
    from statsmodels.stats.multitest import multipletests

    columns = ["outcome", "map", "units", "region", "hemisphere", "reference_group", "group",
               "n_reference", "n_group", "mean_reference", "sd_reference", "mean_group",
               "sd_group", "difference", "ci_low", "ci_high", "p", "p_fdr", "cohens_d",
               "covariates"]
    if "group" not in regions or regions["group"].dropna().nunique() < 2:
        return pd.DataFrame(columns=columns)
    data = regions[regions["group"].notna()].copy()
    if "segmentation" in data:  # one row per subject and region: the atlas rows
        data = data[data["segmentation"].fillna("atlas") == "atlas"]
    data["group"] = data["group"].astype(str)
    groups = sorted(data["group"].unique())
    reference = reference_group if reference_group in groups else groups[0]
    data["value"] = data[statistic]
    rows = []
    for outcome, units in _OUTCOMES.items():
        if outcome not in data or data[outcome].isna().all():
            continue
        for (map_name, region, hemi), sub in data.groupby(["map", "region", "hemisphere"],
                                                          sort=False):
            sub = sub[sub[outcome].notna()]
            if sub["group"].nunique() < 2:
                continue
            for row in _model_rows(sub, outcome, reference, list(covariates)):
                rows.append({"outcome": statistic if outcome == "value" else outcome,
                             "map": map_name, "units": units or sub["units"].iloc[0],
                             "region": region, "hemisphere": hemi, **row})
    table = pd.DataFrame(rows, columns=[c for c in columns if c != "p_fdr"])
    table["p_fdr"] = np.nan
    for _, idx in table.groupby(["outcome", "map", "group"]).groups.items():
        p = table.loc[idx, "p"]
        ok = p.notna()
        if ok.any():
            table.loc[p[ok].index, "p_fdr"] = multipletests(p[ok], method="fdr_bh")[1]
    return table[columns]


def describe(covariates: str) -> str:
    """Methods text of the group comparison (plain text, citation markers ``[@key]``).

    Parameters
    ----------
    covariates : str
        The covariates the models used, as the comparison table gives them (``"age, sex"``);
        empty for none.

    Returns
    -------
    str
        The group-comparison sentence of the report's methods paragraph.
    """
    return ("Groups were compared with the reference group by ordinary least squares "
            f"(statsmodels) with covariates ({covariates or 'none'}), 95 % confidence "
            "intervals, and Benjamini-Hochberg false-discovery-rate correction [@bh] across "
            "regions and hemispheres; Cohen's d is the adjusted difference over the residual "
            "SD.")
