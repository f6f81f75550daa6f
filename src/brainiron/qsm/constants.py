"""Literature constants of the QSM stage, read from ``brainiron/data/qsm_constants.tsv``.

Each row there carries its citation, DOI and how sure we are (mark), as the project's other
data tables do.

References
----------
.. [1] Tiesinga E, Mohr PJ, Newell DB, Taylor BN (2021) CODATA recommended values of the
   fundamental physical constants: 2018. Rev Mod Phys 93:025010.
   doi:10.1103/RevModPhys.93.025010
"""

from __future__ import annotations

import functools

from .. import norms

__all__ = ["constant", "gamma_bar_mhz_per_t"]


@functools.cache
def _table():
    return norms.read_data_table("qsm_constants.tsv").set_index("constant")


def constant(name: str) -> float:
    """A constant of ``qsm_constants.tsv`` by name.

    Parameters
    ----------
    name : str
        The ``constant`` column's key (``gamma_bar``, ``tkd_threshold``, ``vsharp_threshold``).

    Returns
    -------
    float
        Its value, in the table's ``units`` column (MHz/T for ``gamma_bar``).
    """
    return float(_table().loc[name, "value"])


def gamma_bar_mhz_per_t() -> float:
    """Proton gyromagnetic ratio over 2π.

    Returns
    -------
    float
        γ̄ (MHz/T), CODATA 2018 (see the table's citation).
    """
    return constant("gamma_bar")
