"""R2* maps from multi-echo GRE magnitudes: :func:`fit_r2star`, its checks and chunking.

The estimators themselves are in :mod:`brainiron.relaxometry.solvers`; this module checks the
input, splits the voxels into chunks for a thread pool, normalises each chunk and writes the
results into the output maps.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import solvers

__all__ = ["METHODS", "R2starFit", "describe", "fit_r2star", "r2star_sidecar"]

METHODS = ("nlls", "loglinear", "arlo")

# Echo spacings that differ by less than this fraction of their mean count as even (arlo).
_SPACING_RTOL = 1e-3
_F32 = np.float32


@dataclass(frozen=True, eq=False)
class R2starFit:
    """Result of :func:`fit_r2star`: float32 maps of the input's spatial shape.

    Voxels outside the mask, and voxels whose echoes are not all finite and positive, are NaN
    in every map.

    Attributes
    ----------
    r2star : numpy.ndarray
        R2* in 1/s, within ``r2star_bounds``.
    t2star : numpy.ndarray
        T2* = 1 / R2* in s; ``inf`` where R2* is exactly 0 (no decay), NaN where R2* is NaN.
    s0 : numpy.ndarray
        Signal extrapolated to TE = 0, in the units of the magnitude images.
    goodness : numpy.ndarray
        Relative RMS residual ``‖S − Ŝ‖ / ‖S‖`` over the echoes (dimensionless; 0 is a perfect
        fit, of the order of ``1 / SNR`` for a good fit of noisy data, larger for
        non-exponential decay).
    method : str
        The method used: ``"nlls"``, ``"loglinear"`` or ``"arlo"``.
    echo_times : tuple of float
        Echo times in s.
    noise_floor : numpy.ndarray or None
        The fitted constant floor (signal units) when ``noise_floor=True``, else ``None``.
    """

    r2star: np.ndarray
    t2star: np.ndarray
    s0: np.ndarray
    goodness: np.ndarray
    method: str
    echo_times: tuple[float, ...]
    noise_floor: np.ndarray | None = None


def fit_r2star(
    magnitude: np.ndarray | Sequence[np.ndarray],
    echo_times: Sequence[float],
    mask: np.ndarray | None = None,
    method: str = "nlls",
    r2star_bounds: tuple[float, float] = (0.0, 1000.0),
    noise_floor: bool = False,
    max_iter: int = 20,
    chunk_voxels: int = 32768,
    threads: int | None = None,
) -> R2starFit:
    """Fit ``S(TE) = S0 · exp(−R2* · TE)`` voxel by voxel.

    Parameters
    ----------
    magnitude : numpy.ndarray or sequence of numpy.ndarray
        Magnitude images: one array with the echoes on the last axis, shape
        ``(..., n_echoes)``, or a sequence of ``n_echoes`` arrays of one shape (one per echo).
        Any real dtype; computations are float32. Values must be magnitudes (≥ 0), not
        complex or signed (phase-sensitive) data.
    echo_times : sequence of float
        Echo times in s, strictly increasing and positive (at most 1 s, to catch ms).
    mask : numpy.ndarray, optional
        Voxels to fit (non-zero = fit), of the spatial shape. Default: every voxel.
    method : {"nlls", "loglinear", "arlo"}
        Estimator, see the module docstring. ``arlo`` needs ≥ 3 evenly spaced echoes (spacings
        equal to 0.1 %); the others need ≥ 2 echoes with any spacing.
    r2star_bounds : (float, float)
        Lower and upper limit of R2* in 1/s, ``0 ≤ low < high``. The estimates are constrained
        to this interval: a voxel whose unconstrained estimate lies outside (e.g. a signal that
        grows with TE, or one that has vanished by the second echo) is returned *at* the bound,
        with S0 and goodness refitted for that R2*, not as NaN.
    noise_floor : bool
        With ``method="nlls"`` only: fit ``S0 · exp(−R2* · TE) + c`` with a constant floor
        ``c ≥ 0`` (the Rician floor of late, dark echoes). Needs ≥ 4 echoes. Where the best fit
        would have ``c < 0`` the plain model is returned (``c = 0``). The floor trades off with
        S0 and R2* unless the signal decays well into the floor within the echo train, so
        elsewhere (R2* · (TE_last − TE_first) ≲ 2) it makes R2* much noisier and biased high;
        see ``docs/relaxometry.md``. Computed in float64, about half the speed.
    max_iter : int
        Maximum Newton iterations of ``nlls`` (each evaluates every unconverged voxel once;
        typically 2-3 are needed). A voxel stops when its R2* update is below
        1e-4 1/s + 1e-6 · R2*; voxels still moving after ``max_iter`` keep their last estimate.
    chunk_voxels : int
        Voxels per work unit. Memory beyond the outputs is about
        ``threads · chunk_voxels · (30 · n_echoes + 100)`` bytes (twice that with
        ``noise_floor``).
    threads : int, optional
        Worker threads (default: the CPUs this process may use, at most 8).

    Returns
    -------
    R2starFit
        The maps (float32, spatial shape of ``magnitude``; Fortran-ordered when the input is)
        and the method and echo times used.

    Raises
    ------
    brainiron.errors.InputError
        Unknown method; fewer echoes than the method needs; echo count different from the
        number of echo times; echo times not positive, not increasing, not finite or not in
        seconds; unevenly spaced echoes with ``arlo``; echo images of different shapes; a mask
        of the wrong shape; complex or non-numeric magnitudes; invalid bounds or settings.

    Notes
    -----
    A voxel is fitted only if all its echoes are finite and > 0 (a zero magnitude has no
    logarithm and carries no decay information); otherwise all its outputs are NaN. No warning
    is emitted for such voxels.
    """
    tes, source, n_echoes, spatial_shape, order, lo, hi, threads = _check_inputs(
        magnitude, echo_times, method, r2star_bounds, noise_floor, max_iter, chunk_voxels,
        threads)
    n_vox = int(np.prod(spatial_shape, dtype=np.int64))
    chunks = _chunks(mask, spatial_shape, order, n_vox, chunk_voxels)

    names = ["r2star", "t2star", "s0", "goodness"] + (["noise_floor"] if noise_floor else [])
    maps = {name: np.empty(spatial_shape, dtype=_F32, order=order) for name in names}
    flat = {name: m.reshape(-1, order=order) for name, m in maps.items()}

    t = tes.astype(_F32)
    # Evenly spaced echoes (to 1 ns) let exp(−R2*·TE) be computed by repeated products.
    dt = (tes[-1] - tes[0]) / (tes.size - 1)
    even = np.max(np.abs(tes - tes[0] - dt * np.arange(tes.size))) <= 1e-9
    settings = (method, t, dt if even else None, lo, hi, noise_floor, max_iter,
                min(chunk_voxels, n_vox))
    local = threading.local()  # one workspace per worker thread, for this call only

    def work(chunk):
        _fit_chunk(source, n_echoes, *chunk, flat, settings, local)

    _run(work, chunks, threads)
    return R2starFit(
        r2star=maps["r2star"], t2star=maps["t2star"], s0=maps["s0"],
        goodness=maps["goodness"], method=method, echo_times=tuple(float(x) for x in tes),
        noise_floor=maps.get("noise_floor"),
    )


def describe(method: str, n_fitted: int) -> str:
    """Methods text of the relaxometry stage (plain text, for the report).

    Parameters
    ----------
    method : str
        The R2* method used (``nlls``, ``loglinear`` or ``arlo``).
    n_fitted : int
        Number of subject sessions whose R2* was fitted from MEGRE magnitude images.

    Returns
    -------
    str
        One sentence; empty when ``n_fitted`` is 0 (no R2* was fitted).
    """
    if not n_fitted:
        return ""
    return (f"R2* was fitted from the multi-echo GRE magnitude ({method}) for {int(n_fitted)} "
            "subject session(s) without an R2* map.")


def r2star_sidecar(fit: R2starFit, field_strength: float, sources: Sequence) -> dict:
    """The BIDS JSON sidecar of a fitted R2* map.

    Parameters
    ----------
    fit : R2starFit
        The fit (its method and echo times in s are recorded).
    field_strength : float
        B0 in tesla (``MagneticFieldStrength``).
    sources : sequence of str or path
        The MEGRE magnitude images fitted, in echo order (BIDS URIs, ``bids:raw:...``).

    Returns
    -------
    dict
        ``Units`` (1/s), ``Description``, ``FitMethod``, ``EchoTime`` (s), ``MagneticFieldStrength``
        (T), ``Sources`` and ``GeneratedBy``.
    """
    from .. import __version__

    return {
        "Units": "1/s",
        "Description": "R2* fitted by brainiron from the MEGRE magnitude echoes (NaN outside "
                       "the magnitude's foreground and where the fit is undefined)",
        "FitMethod": fit.method,
        "EchoTime": list(fit.echo_times),
        "MagneticFieldStrength": field_strength,
        "Sources": [str(p) for p in sources],
        "GeneratedBy": {"Name": "brainiron", "Version": __version__},
    }


def _check_inputs(magnitude, echo_times, method, r2star_bounds, noise_floor, max_iter,
                  chunk_voxels, threads):
    """Check the arguments of :func:`fit_r2star` (in this order); return what it uses."""
    if method not in METHODS:
        raise InputError(None, f"unknown R2* method {method!r}; choose one of {METHODS}")
    tes = _check_echo_times(echo_times)
    source, n_echoes, spatial_shape, order = _echo_views(magnitude)
    if n_echoes != tes.size:
        raise InputError(None, f"{n_echoes} echo images but {tes.size} echo times; "
                               "give one echo time per echo")
    need = 4 if noise_floor else (3 if method == "arlo" else 2)
    if n_echoes < need:
        what = "a noise floor fit" if noise_floor else f"method {method!r}"
        raise InputError(None, f"{n_echoes} echo(es): {what} needs at least {need} echoes")
    if method == "arlo":
        steps = np.diff(tes)
        if np.ptp(steps) > _SPACING_RTOL * steps.mean():
            raise InputError(None, "method 'arlo' needs evenly spaced echoes, got spacings "
                                   f"{np.round(steps * 1e3, 4).tolist()} ms; use 'loglinear' "
                                   "or 'nlls'")
    if noise_floor and method != "nlls":
        raise InputError(None, f"noise_floor=True needs method 'nlls', not {method!r}")
    lo, hi = _check_bounds(r2star_bounds)
    for name, value in (("max_iter", max_iter), ("chunk_voxels", chunk_voxels)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise InputError(None, f"{name} must be a positive integer, got {value!r}")
    if threads is None:
        threads = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1))
    elif not isinstance(threads, int | np.integer) or threads < 1:
        raise InputError(None, f"threads must be a positive integer, got {threads!r}")
    return tes, source, n_echoes, spatial_shape, order, lo, hi, threads


def _run(work, chunks: list, threads: int) -> None:
    """Call ``work`` on every chunk: in a pool of ``threads`` threads when there are several."""
    if threads == 1 or len(chunks) <= 1:
        for sel in chunks:
            work(sel)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(work, chunks):
                pass


def _chunks(mask, spatial_shape, order, n_vox, chunk_voxels) -> list:
    """Work units: (voxel selection, stretch of the outputs to set to NaN first, or None)."""
    if mask is None:
        return [(slice(i, min(i + chunk_voxels, n_vox)), None)
                for i in range(0, n_vox, chunk_voxels)]
    mask = np.asarray(mask)
    if mask.shape != spatial_shape:
        raise InputError(None, f"mask has shape {mask.shape}, the magnitude images "
                               f"{spatial_shape}")
    if mask.dtype.kind not in "biuf":
        raise InputError(None, f"mask must be boolean or numeric, got {mask.dtype}")
    index = np.flatnonzero(mask.reshape(-1, order=order))
    # Each chunk also fills the outputs from its first voxel to the next chunk's with NaN
    # (the voxels outside the mask): first-touching the fresh output pages is a large part
    # of the work, and this spreads it over the threads, interleaved with the fits.
    starts = list(range(0, index.size, chunk_voxels))
    bounds = [0, *(int(index[i]) for i in starts[1:]), n_vox]
    chunks = [(index[i:i + chunk_voxels], slice(bounds[k], bounds[k + 1]))
              for k, i in enumerate(starts)]
    if not chunks and n_vox:
        chunks = [(index, slice(0, n_vox))]
    return chunks


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_echo_times(echo_times) -> np.ndarray:
    try:
        tes = np.asarray(echo_times, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(None, f"echo times must be numbers in s, got {echo_times!r}") from None
    if tes.ndim != 1:
        raise InputError(None, f"echo times must be a flat sequence, got shape {tes.shape}")
    if tes.size < 2:
        raise InputError(None, f"{tes.size} echo time(s): R2* needs at least 2 echoes")
    if not np.all(np.isfinite(tes)) or np.any(tes <= 0):
        raise InputError(None, f"echo times must be positive and finite, got {tes.tolist()}")
    if np.any(np.diff(tes) <= 0):
        raise InputError(None, f"echo times must be strictly increasing, got {tes.tolist()}")
    if tes[-1] > 1.0:
        raise InputError(None, f"echo times must be in seconds, got up to {tes[-1]:g} "
                               "(milliseconds? divide by 1000)")
    return tes


def _check_bounds(bounds) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise InputError(None, f"r2star_bounds must be two numbers (1/s), got {bounds!r}") \
            from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo < hi):
        raise InputError(None, f"r2star_bounds must satisfy 0 <= low < high (1/s), got "
                               f"({lo:g}, {hi:g})")
    return lo, hi


def _as_real_array(a, what: str) -> np.ndarray:
    a = np.asanyarray(a)
    if a.dtype.kind not in "iuf":
        hint = " (take np.abs of complex data)" if a.dtype.kind == "c" else ""
        raise InputError(None, f"{what} must hold real numbers, got dtype {a.dtype}{hint}")
    return a


def _echo_views(magnitude) -> tuple[np.ndarray | list[np.ndarray], int, tuple[int, ...], str]:
    """The voxels' echoes without copying: source, echo count, spatial shape and voxel order.

    The source is a ``(n_voxels, n_echoes)`` array for one C-ordered array, else a list of
    flat per-echo arrays. The order is ``"F"`` for Fortran-ordered input (e.g. NIfTI data from
    nibabel), else ``"C"``; voxel indices, mask and outputs all use it.
    """
    if isinstance(magnitude, np.ndarray):
        mag = _as_real_array(magnitude, "magnitude")
        if mag.ndim < 1:
            raise InputError(None, "magnitude must have the echoes on its last axis, got a "
                                   "scalar")
        spatial, n_echoes = mag.shape[:-1], mag.shape[-1]
        if mag.flags.f_contiguous and not mag.flags.c_contiguous:
            flat = mag.reshape((-1, n_echoes), order="F")
            return [flat[:, k] for k in range(n_echoes)], n_echoes, spatial, "F"
        return mag.reshape((-1, n_echoes)), n_echoes, spatial, "C"
    if not isinstance(magnitude, Sequence) or isinstance(magnitude, str | bytes):
        raise InputError(None, "magnitude must be an array with the echoes on its last axis "
                               f"or a sequence of per-echo arrays, got {type(magnitude).__name__}")
    echoes = [_as_real_array(e, f"echo {k + 1}") for k, e in enumerate(magnitude)]
    if not echoes:
        raise InputError(None, "no echo images given")
    spatial = echoes[0].shape
    for k, e in enumerate(echoes[1:], start=2):
        if e.shape != spatial:
            raise InputError(None, f"echo {k} has shape {e.shape} but echo 1 has {spatial}; "
                                   "all echoes must have one shape")
    fortran = all(e.flags.f_contiguous and not e.flags.c_contiguous for e in echoes)
    order = "F" if fortran else "C"
    return [e.reshape(-1, order=order) for e in echoes], len(echoes), spatial, order


# --------------------------------------------------------------------------------------------
# Per-chunk fitting. Arrays are (n_echoes, n_voxels), see brainiron.relaxometry.solvers.
# --------------------------------------------------------------------------------------------


def _fit_chunk(source, n_echoes, sel, nan_fill, flat, settings, local) -> None:
    """Gather one chunk of voxels, fit it and write the results into the flat outputs.

    ``sel`` (a slice or sorted indices) picks the voxels; ``nan_fill`` (a slice or None) is the
    stretch of the outputs this chunk first sets to NaN.
    """
    if nan_fill is not None:
        for out in flat.values():
            out[nan_fill] = np.nan
        if sel.size == 0:
            return
    method, t, dt, lo, hi, floor, max_iter, capacity = settings
    ws = getattr(local, "ws", None)
    if ws is None:
        ws = local.ws = solvers.Workspace(n_echoes, capacity, dt)
    n = (sel.stop - sel.start) if isinstance(sel, slice) else sel.size
    raw = ws("raw", n)
    if isinstance(source, np.ndarray):  # (n_voxels, n_echoes): gather rows, then transpose
        raw[...] = (source[sel] if isinstance(sel, slice) else source.take(sel, axis=0)).T
    else:
        for k, echo in enumerate(source):
            raw[k] = echo[sel]
    with np.errstate(all="ignore"):
        # Valid voxels: every echo finite and > 0 (NaN propagates into min and max).
        scale = raw.max(axis=0)
        ok = (raw.min(axis=0) > 0) & (scale < np.inf)
        m = int(np.count_nonzero(ok))
        if m < n:
            where = np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel
            for out in flat.values():
                out[where[~ok]] = np.nan
            if m == 0:
                return
            sel, scale = where[ok], scale[ok]
            sig = np.compress(ok, raw, axis=1, out=ws("sig", m))
        else:
            ws.swap("raw", "sig")
            sig = ws("sig", m)
        sig /= scale  # every voxel's largest echo is 1: no overflow, scale-free tolerances
        results = _fit_valid(sig, scale, ws, local, method, t, lo, hi, floor, max_iter)
    for name, values in results.items():
        flat[name][sel] = values


def _fit_valid(sig, scale, ws, local, method, t, lo, hi, floor, max_iter):
    """Fit voxels whose echoes are all finite and > 0, normalised to a maximum of 1."""
    tr = t - t[0]  # time from the first echo: exp(−R2*·tr) ≤ 1 never overflows
    if method == "arlo":
        r2 = np.clip(solvers.arlo(sig, float(tr[-1]) / (tr.size - 1), ws), lo, hi)
        s0, cost = solvers.amplitude_fit(sig, tr, r2, ws)
    else:
        r2, s0 = solvers.loglinear(sig, tr, lo, hi, ws)
        if method == "loglinear":
            cost = solvers.residual(sig, tr, r2, s0, ws("t1", sig.shape[1]), ws.dt)
        else:
            r2, s0, _ = solvers.minimise(solvers.eval_plain, sig, tr, r2, lo, hi, max_iter, ws)
            cost = solvers.residual(sig, tr, r2, s0, ws("t1", sig.shape[1]), ws.dt)
    if floor:
        ws64 = getattr(local, "ws64", None)
        if ws64 is None:
            ws64 = local.ws64 = solvers.Workspace(*ws.shape, ws.dt, dtype=np.float64)
        r2, s0, c, cost = solvers.nlls_floor(sig, tr, r2, s0, cost, lo, hi, max_iter, ws64)
    bad = ~np.isfinite(r2)
    goodness = np.sqrt(cost / np.einsum("ij,ij->j", sig, sig))
    s0 = s0 * np.exp(r2 * t[0]) * scale
    out = {"r2star": r2, "t2star": 1 / r2, "s0": s0, "goodness": goodness}
    if floor:
        out["noise_floor"] = c * scale
    if bad.any():
        for values in out.values():
            values[bad] = np.nan
    return out

