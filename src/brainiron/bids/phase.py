"""Discovery of MEGRE phase echoes (``*_echo-<n>_part-phase_MEGRE``) beside their magnitude.

A subject's phase echoes are used (rule ``qsm``: χ reconstructed from phase) when every
magnitude echo of the chosen series has a ``part-phase`` twin (same entities except ``part``)
on the same grid, and the subject has no ``Chimap``. Reads only file names and headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import load_nifti, parse_name

__all__ = ["match_phase"]


def _twin_key(path: Path) -> tuple:
    """Entities of an echo other than ``part``, as a hashable key."""
    return tuple(sorted((k, v) for k, v in parse_name(path)[0].items() if k != "part"))


def _series_key(path: Path) -> tuple:
    return tuple(sorted((k, v) for k, v in parse_name(path)[0].items()
                        if k not in ("echo", "part")))


def match_phase(magnitude: Sequence[Path], phase: Sequence[Path], has_chimap: bool
                ) -> tuple[list[Path], list[tuple[str, str]]]:
    """The phase echo of each magnitude echo, in echo order.

    Parameters
    ----------
    magnitude : sequence of Path
        The chosen series' magnitude echoes, in echo order (may be empty).
    phase : sequence of Path
        Every ``part-phase`` MEGRE file of the subject.
    has_chimap : bool
        The subject has a χ map: its phase is then listed as ignored (not reconstructed).

    Returns
    -------
    phase : list of Path
        One phase file per magnitude echo (empty when there is no phase to use).
    ignored : list of (str, str)
        Phase files not used, with the reason.

    Raises
    ------
    InputError
        Phase without any magnitude, a phase echo of the chosen series without its
        ``part-mag`` twin (or the reverse), or a phase echo on another grid than its
        magnitude (one line, naming the file).
    """
    phase = sorted(phase)
    if not phase:
        return [], []
    if has_chimap:
        return [], [(str(p), "part-phase is not used: the subject has a Chimap (χ is "
                             "reconstructed from phase only without one)") for p in phase]
    if not magnitude:
        raise InputError(phase[0], "phase without its magnitude: no part-mag MEGRE echo of "
                                   "this series (QSM needs both)")
    chosen = _series_key(magnitude[0])
    by_twin = {_twin_key(p): p for p in phase if _series_key(p) == chosen}
    ignored = [(str(p), "phase echo of a MEGRE series that was not chosen")
               for p in phase if _series_key(p) != chosen]
    if not by_twin:
        return [], ignored
    matched = []
    for mag in magnitude:
        twin = by_twin.pop(_twin_key(mag), None)
        if twin is None:
            raise InputError(mag, "no part-phase twin of this magnitude echo, while other "
                                  "echoes of the series have phase")
        matched.append(twin)
    if by_twin:
        extra = sorted(by_twin.values())[0]
        raise InputError(extra, "phase echo without its part-mag twin (same entities, "
                                "part-mag)")
    for mag, ph in zip(magnitude, matched, strict=True):
        img_m = load_nifti(mag, load_data=False)[1]
        img_p = load_nifti(ph, load_data=False)[1]
        if (tuple(img_p.shape[:3]) != tuple(img_m.shape[:3])
                or not np.allclose(img_p.affine, img_m.affine, atol=1e-3)):
            raise InputError(ph, f"phase grid (shape {tuple(img_p.shape[:3])}) differs from "
                                 f"its magnitude {mag.name} (shape {tuple(img_m.shape[:3])}); "
                                 "phase and magnitude must share one grid")
    return matched, ignored
