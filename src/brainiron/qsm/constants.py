"""Literature constants of the QSM stage, read from ``brainiron/data/qsm_constants.tsv``.

Each row there carries its citation, DOI and how sure we are (mark), as the project's other
data tables do.
"""

from __future__ import annotations

import functools

from .. import norms

__all__ = ["constant", "gamma_bar_mhz_per_t"]


@functools.cache
def _table():
    return norms.read_data_table("qsm_constants.tsv").set_index("constant")


def constant(name: str) -> float:
    """A constant of ``qsm_constants.tsv`` by name (units in the table's ``units`` column)."""
    return float(_table().loc[name, "value"])


def gamma_bar_mhz_per_t() -> float:
    """Proton gyromagnetic ratio over 2π (MHz/T)."""
    return constant("gamma_bar")
