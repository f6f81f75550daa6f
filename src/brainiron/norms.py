"""Literature tables shipped as package data: normative iron, calibrations, phantom tissues.

Every constant brainiron takes from the literature lives in a TSV under ``brainiron/data``
with its citation and a confidence mark (V read in the source, V2 read in a secondary source,
R from memory of the paper, D derived by us). This module reads those tables and evaluates the
normative age model; it holds no numbers of its own.

References
----------
.. [1] Hallgren B, Sourander P (1958) The effect of age on the non-haemin iron in the human
   brain. J Neurochem 3:41-51.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import pandas as pd

__all__ = [
    "calibrations",
    "expected_iron",
    "iron_norms",
    "phantom_tissues",
    "read_data_table",
]


def read_data_table(name: str) -> pd.DataFrame:
    """Read ``brainiron/data/<name>`` (TSV) as a DataFrame (empty cells are missing)."""
    ref = resources.files("brainiron") / "data" / name
    with resources.as_file(ref) as path:
        return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])


@functools.cache
def iron_norms() -> pd.DataFrame:
    """Normative iron per region (``iron_norms.tsv``), indexed by region.

    Columns: ``a_mg_per_kg, b_per_year, c_mg_per_kg`` (age model parameters),
    ``sd_mg_per_kg`` (between-subject SD of adults), ``source, mark, note``.
    Iron is in mg per kg wet (fresh) tissue.
    """
    return read_data_table("iron_norms.tsv").set_index("region")


@functools.cache
def calibrations() -> pd.DataFrame:
    """Named MRI → iron calibrations (``calibrations.tsv``), indexed by name.

    Each row is a line ``value = slope · Fe + intercept`` (value in the map's ``units``: ppm
    or 1/s; Fe in mg/kg wet weight) measured at ``field_strength_T``, with its citation and
    confidence mark.
    """
    return read_data_table("calibrations.tsv").set_index("name")


@functools.cache
def phantom_tissues() -> pd.DataFrame:
    """Tissue properties of the phantom (``phantom_tissues.tsv``), indexed by tissue."""
    return read_data_table("phantom_tissues.tsv").set_index("tissue")


def expected_iron(region: str, age_years, norms: pd.DataFrame | None = None) -> np.ndarray:
    """Expected iron at a given age from the Hallgren & Sourander exponential model.

    ``Fe(age) = a · (1 − exp(−b · age)) + c``

    Parameters
    ----------
    region : str
        A region of ``iron_norms.tsv`` (``SN``, ``GP``, ``Pu``, ...).
    age_years : float or array_like
        Age in years; NaN gives NaN.
    norms : DataFrame, optional
        A replacement norms table (same columns), e.g. from a config override.

    Returns
    -------
    ndarray
        Expected iron in mg/kg wet weight.
    """
    norms = iron_norms() if norms is None else norms
    row = norms.loc[region]
    age = np.asarray(age_years, dtype=float)
    return row["a_mg_per_kg"] * (1.0 - np.exp(-row["b_per_year"] * age)) + row["c_mg_per_kg"]
