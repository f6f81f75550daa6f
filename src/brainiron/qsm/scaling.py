"""Phase scaling: find how a phase image is stored and convert it to radians.

Phase images arrive as radians in [−π, π], as vendor integers ([−4096, 4095] signed or
[0, 4095] unsigned, 12 bits) or under another linear scaling (e.g. a NIfTI ``scl_slope`` that
turns stored radians into ±0.0037). A wrapped phase image fills its range almost uniformly
(wraps and the noise outside the head cover every value), so a linear scaling is recognised by
that coverage and mapped so that its span is 2π. Anything else is an error naming the range.

References
----------
.. [1] Robinson SD, Bredies K, Khabipova D, Dymerska B, Marques JP, Schweser F (2017) An
   illustrated comparison of processing methods for MR phase imaging and QSM: combining array
   coil signals and phase unwrapping. NMR Biomed 30:e3601. doi:10.1002/nbm.3601
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["phase_to_radians", "wrap"]

_BINS = 16
#: each of the 16 equal bins of the range must hold at least this share of the voxels
_MIN_BIN_SHARE = 0.5 / _BINS
#: a radian image must span at least this share of 2π
_MIN_SPAN_SHARE = 0.9


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap phase to (−π, π].

    Parameters
    ----------
    phase : ndarray
        Phase (rad).

    Returns
    -------
    ndarray
        ``phase`` wrapped to (−π, π] (rad), float32 unless the input is float64.
    """
    x = np.asarray(phase)
    x = x if x.dtype == np.float64 else x.astype(np.float32, copy=False)
    two_pi = x.dtype.type(2 * np.pi)
    return x.dtype.type(np.pi) - np.remainder(x.dtype.type(np.pi) - x, two_pi)


def _fills_range(values: np.ndarray, lo: float, hi: float) -> bool:
    """Whether ``values`` cover [lo, hi] like a wrapped phase (every bin populated)."""
    if hi <= lo:
        return False
    counts, _ = np.histogram(values, bins=_BINS, range=(lo, hi))
    return bool(counts.min() >= _MIN_BIN_SHARE * values.size)


def phase_to_radians(phase: np.ndarray, name: str = "phase") -> tuple[np.ndarray, dict]:
    """Detect the scaling of a phase image and return it in radians, wrapped to (−π, π].

    Parameters
    ----------
    phase : ndarray
        Phase image (any shape, e.g. (X, Y, Z, echoes)), as read with the header's
        slope applied (nibabel ``get_fdata``). Units unknown; detected here.
    name : str
        File (or array) name for the error message.

    Returns
    -------
    radians : ndarray of float32
        Phase (rad) in (−π, π].
    record : dict
        ``detected`` (``"radians"``, ``"vendor_signed_4096"``, ``"vendor_unsigned_4096"`` or
        ``"linear"``), ``input_range`` [min, max] (input units), ``scale`` (rad per input
        unit), ``offset`` (rad) with ``radians = wrap(scale * x + offset)``, ``formula``.

    Raises
    ------
    InputError
        NaN or infinite values; a constant image; a range that is none of the above
        (one line with the range found).
    """
    x = np.asarray(phase)
    if x.size == 0:
        raise InputError(name, "phase image is empty")
    finite = np.isfinite(x)
    if not finite.all():
        raise InputError(name, f"phase has {int((~finite).sum())} NaN or infinite voxels; "
                               "phase must be finite everywhere (0 outside the head is fine)")
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo
    tol = 1e-3
    values = x.ravel()
    if values.size > 2_000_000:  # the histogram test needs no more than a sample
        values = values[:: values.size // 1_000_000]
    integers = bool(np.all(np.mod(values, 1) == 0))
    nonzero = values[values != 0]  # phase set to 0 outside a mask is not part of the range
    if nonzero.size >= 100:
        values = nonzero
    if lo >= -np.pi - tol and hi <= np.pi + tol and span >= _MIN_SPAN_SHARE * 2 * np.pi:
        kind, scale, offset = "radians", 1.0, 0.0
    elif integers and lo >= -4096 and hi <= 4095 and lo < 0 and span >= 0.9 * 8191:
        kind, scale, offset = "vendor_signed_4096", np.pi / 4096, 0.0
    elif integers and lo >= 0 and hi <= 4095 and span >= 0.9 * 4095:
        kind, scale, offset = "vendor_unsigned_4096", 2 * np.pi / 4096, -np.pi
    elif _fills_range(values, lo, hi):
        # the observed span of a wrapped phase is 2π less one quantisation step at most
        kind, scale = "linear", 2 * np.pi / span
        offset = -np.pi - lo * scale
    else:
        raise InputError(name, f"phase range [{lo:.6g}, {hi:.6g}] is not radians ([-pi, pi]), "
                               "vendor integers ([-4096, 4095] or [0, 4095]) or a linear scaling "
                               "that fills its range; rescale the phase to radians")
    if kind == "radians":
        radians = np.clip(x.astype(np.float32), -np.pi, np.pi)
    else:
        radians = wrap(x.astype(np.float64) * scale + offset).astype(np.float32)
    record = {"detected": kind, "input_range": [lo, hi], "scale": float(scale),
              "offset": float(offset),
              "formula": "radians = wrap(scale * stored + offset) to (-pi, pi]"}
    return radians, record
