"""The methods paragraph: each stage describes itself, the report numbers the citations.

Every stage has a ``describe(...)`` returning plain text with pandoc-style citation markers
``[@key]`` (smriprep's ``__desc__`` is the model): :func:`brainiron.regions.describe`,
:func:`brainiron.registration.describe`, :func:`brainiron.dentate.describe`,
:func:`brainiron.refine.describe`, :func:`brainiron.relaxometry.describe`,
:func:`brainiron.iron.describe` and :func:`brainiron.stats.describe`. :func:`methods_text`
joins them from the run's settings and what the derivatives say was done;
:func:`number_citations` turns the markers into ``[1]``, ``[2]`` ... in order of first
citation, and :func:`brainiron.references.reference` gives each reference's text
(``data/references.tsv``; calibrations from ``data/calibrations.tsv``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .. import dentate, iron, qsm, refine, regions, registration, relaxometry, stats
from ..references import reference
from ..settings import Settings
from .html import esc

__all__ = ["methods_html", "methods_text", "number_citations"]

#: ``[@key]`` or ``[@key1; @key2]``; keys are letters, digits and ``_ : . -``.
_MARKER = re.compile(r"\[(@[\w:.\-]+(?:\s*;\s*@[\w:.\-]+)*)\]")


def number_citations(text: str) -> tuple[str, list[str]]:
    """Replace citation markers by numbers in order of first citation.

    Parameters
    ----------
    text : str
        Text with markers ``[@key]`` or ``[@a; @b]``.

    Returns
    -------
    text : str
        The markers replaced by ``[1]``, ``[2, 3]`` ...
    keys : list of str
        The cited keys, in number order (``keys[0]`` is reference 1).

    Examples
    --------
    >>> number_citations("A [@fonov], B [@avants; @fonov].")
    ('A [1], B [2, 1].', ['fonov', 'avants'])
    """
    keys: list[str] = []

    def number(match: re.Match) -> str:
        numbers = []
        for part in match.group(1).split(";"):
            key = part.strip().removeprefix("@")
            if key not in keys:
                keys.append(key)
            numbers.append(str(keys.index(key) + 1))
        return "[" + ", ".join(numbers) + "]"

    return _MARKER.sub(number, text), keys


def methods_text(settings: Settings, *, data: str, maps: Sequence[str],
                 kinds: Sequence[str], chi_template: bool, n_fitted: int,
                 calibrations: Sequence[str], covariates: str | None,
                 n_reconstructed: int = 0) -> str:
    """The methods paragraph, in plain text with citation markers ``[@key]``.

    Parameters
    ----------
    settings : brainiron.settings.Settings
        The run's configuration, typed.
    data : str
        What was measured (``"the BIDS dataset"``, ``"brainiron's synthetic phantom"``).
    maps : sequence of str
        Quantified maps, in the tables' order.
    kinds : sequence of str
        Registration image kinds used (``T1w``, ``MEGRE``, ``Chimap`` ...), sorted.
    chi_template : bool
        Some subject was registered to the χ-contrast template.
    n_fitted : int
        Subject sessions whose R2* was fitted from MEGRE magnitude images.
    calibrations : sequence of str
        Calibrations the iron columns used (empty: no iron sentence).
    covariates : str or None
        Covariates of the group comparison (``"age, sex"``); ``None``: no comparison.
    n_reconstructed : int
        Subject sessions whose χ was reconstructed from MEGRE phase (rule ``qsm``).

    Returns
    -------
    str
        One paragraph; the sentences of stages that did not run are left out.
    """
    parts = [regions.describe(maps, data, settings.chi_reference,
                              settings.csf_reference_depth_mm),
             registration.describe(settings.registration, kinds, chi_template),
             dentate.describe(),
             refine.describe(settings.refinement),
             relaxometry.describe(settings.relaxometry.method, n_fitted),
             qsm.describe(settings.qsm, n_reconstructed)]
    if calibrations:
        parts.append(iron.describe(calibrations, settings.iron.statistic))
    if covariates is not None:
        parts.append(stats.describe(covariates))
    return " ".join(p.strip() for p in parts if p and p.strip())


def methods_html(text: str) -> str:
    """The methods paragraph (``<p id="methods-text">``) and its numbered reference list
    (``<ol id="references">``), from plain text with citation markers."""
    numbered, keys = number_citations(text)
    items = "".join(f"<li id='ref-{i + 1}'>{esc(reference(key))}</li>"
                    for i, key in enumerate(keys))
    return (f'<p id="methods-text">{esc(numbered, quote=False)}</p>'
            f'<h3>References</h3><ol id="references">{items}</ol>')
