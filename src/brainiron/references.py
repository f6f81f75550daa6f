"""The literature brainiron cites, from one table (``data/references.tsv``).

Each stage's methods text (``describe()``) cites with pandoc-style markers ``[@key]``; the
report numbers them (:mod:`brainiron.report.methods`) and lists the references with
:func:`reference`. Two kinds of key:

* a key of ``data/references.tsv`` (columns ``key, citation, doi``): ``fonov``, ``pauli``,
  ``fischl``, ``avants``, ``hallgren``, ``bh``, ...;
* ``cal:<name>``: an MRI → iron calibration of ``data/calibrations.tsv``, which keeps its own
  citation (``source``, ``doi``) beside its constants.

Examples
--------
>>> reference("bh")[:43]
'Benjamini Y, Hochberg Y (1995) Controlling '
>>> reference("cal:langkammer2012_chi")
'Langkammer C et al. (2012) NeuroImage 62:1593-1599 doi:10.1016/j.neuroimage.2012.05.049'
"""

from __future__ import annotations

import functools

import pandas as pd

from . import norms

__all__ = ["CALIBRATION_PREFIX", "reference", "references"]

#: Prefix of citation keys that name a calibration of ``calibrations.tsv``.
CALIBRATION_PREFIX = "cal:"


@functools.cache
def references() -> pd.DataFrame:
    """Every reference of ``data/references.tsv``, indexed by key.

    Returns
    -------
    DataFrame
        Index ``key``; columns ``citation`` (authors, year, title, journal volume:pages) and
        ``doi`` (empty when none).
    """
    return norms.read_data_table("references.tsv").set_index("key")


def _with_doi(text: str, doi) -> str:
    return f"{text} doi:{doi}" if isinstance(doi, str) and doi else text


def reference(key: str) -> str:
    """The full citation of a key, with its DOI.

    Parameters
    ----------
    key : str
        A key of ``data/references.tsv`` (``"fonov"``), or ``"cal:<name>"`` for a calibration
        of ``data/calibrations.tsv`` (``"cal:langkammer2012_chi"``).

    Returns
    -------
    str
        ``"<citation> doi:<doi>"`` (no DOI part when the table has none).

    Raises
    ------
    KeyError
        The key is in neither table.
    """
    if key.startswith(CALIBRATION_PREFIX):
        name = key[len(CALIBRATION_PREFIX):]
        table = norms.calibrations()
        if name not in table.index:
            raise KeyError(f"no calibration {name!r} in calibrations.tsv (known: "
                           f"{', '.join(table.index)})")
        return _with_doi(str(table.loc[name, "source"]), table.loc[name, "doi"])
    table = references()
    if key not in table.index:
        raise KeyError(f"no reference {key!r} in references.tsv (known: "
                       f"{', '.join(table.index)})")
    return _with_doi(str(table.loc[key, "citation"]), table.loc[key, "doi"])
