"""R2* (= 1/T2*) maps from multi-echo gradient-echo (GRE) magnitude images.

A voxel's magnitude decays mono-exponentially with echo time,
``S(TE) = S0 · exp(−R2* · TE)`` (optionally plus a constant noise floor), and
:func:`fit_r2star` estimates R2* (1/s), S0 (signal units) and a goodness of fit for every voxel
with one of three methods:

``nlls`` (default)
    Non-linear least squares on the magnitudes, the maximum-likelihood fit for Gaussian noise.
    S0 (and the floor) are linear parameters: for a given R2* their least-squares values are
    closed form, so the fit is a search in R2* alone (variable projection, Golub & Pereyra
    1973): a safeguarded Newton iteration with exact derivatives of the projected cost (a
    Gauss–Newton step where the cost is not convex, a regula-falsi step where a step would
    leave the bracket of the minimum), vectorised over all voxels of a chunk and started from
    ``loglinear``. It agrees with ``scipy.optimize.curve_fit`` to ~1e-5 in R2*.
``loglinear``
    Weighted linear least squares on ``log S`` with weights ``S²`` (the inverse variance of
    ``log S`` under Gaussian noise); closed form, any echo spacing.
``arlo``
    Auto-Regression on Linear Operations (Pei et al. 2015, Magn Reson Med 73:843-850, with its
    erratum): closed form from Simpson's-rule integrals of evenly spaced echoes. Its
    discretisation makes it slightly biased towards low R2* even without noise (relative error
    about ``(R2*·ΔTE)⁴ / 180``, e.g. 3·10⁻⁴ at R2* = 100 1/s, ΔTE = 5 ms).

Voxels are processed in chunks (float32) by a small thread pool; NumPy releases the GIL in
its loops, so the chunks run in parallel and memory stays bounded.

See ``docs/relaxometry.md`` for the measured accuracy of each method.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["METHODS", "R2starFit", "fit_r2star"]

METHODS = ("nlls", "loglinear", "arlo")

# Echo spacings that differ by less than this fraction of their mean count as even (arlo).
_SPACING_RTOL = 1e-3
# Convergence of nlls: stop when the R2* update is below _XTOL_ABS + _XTOL_REL · R2* (1/s).
_XTOL_ABS = 1e-4
_XTOL_REL = 1e-6
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

    n_vox = int(np.prod(spatial_shape, dtype=np.int64))
    if mask is None:
        chunks = [(slice(i, min(i + chunk_voxels, n_vox)), None)
                  for i in range(0, n_vox, chunk_voxels)]
    else:
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

    if threads == 1 or len(chunks) <= 1:
        for sel in chunks:
            work(sel)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(work, chunks):
                pass
    return R2starFit(
        r2star=maps["r2star"], t2star=maps["t2star"], s0=maps["s0"],
        goodness=maps["goodness"], method=method, echo_times=tuple(float(x) for x in tes),
        noise_floor=maps.get("noise_floor"),
    )


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
# Per-chunk fitting. Arrays are (n_echoes, n_voxels): each echo is one contiguous row, so every
# operation is a vectorised loop over voxels. Large temporaries live in a per-thread workspace:
# freeing and re-allocating them per chunk would make the C library return their pages to the
# system and fault them in again, which costs more than the arithmetic.
# --------------------------------------------------------------------------------------------


class _Workspace:
    """Named ``(n_echoes, capacity)`` buffers of one worker thread, reused across chunks."""

    def __init__(self, n_echoes: int, capacity: int, dt: float | None, dtype=_F32):
        self.shape, self.dtype = (n_echoes, capacity), dtype
        self.dt = dt  # the echo spacing (s) if even, for _decay
        self._bufs: dict[str, np.ndarray] = {}

    def __call__(self, name: str, m: int, rows: slice | None = None) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None:
            buf = self._bufs[name] = np.empty(self.shape, self.dtype)
        return buf[:, :m] if rows is None else buf[rows, :m]

    def swap(self, a: str, b: str) -> None:
        self._bufs[a], self._bufs[b] = self._bufs.get(b), self._bufs.get(a)


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
        ws = local.ws = _Workspace(n_echoes, capacity, dt)
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
        r2 = np.clip(_arlo(sig, float(tr[-1]) / (tr.size - 1), ws), lo, hi)
        s0, cost = _amplitude_fit(sig, tr, r2, ws)
    else:
        r2, s0 = _loglinear(sig, tr, lo, hi, ws)
        if method == "loglinear":
            cost = _residual(sig, tr, r2, s0, ws("t1", sig.shape[1]), ws.dt)
        else:
            r2, s0, _ = _minimise(_eval_plain, sig, tr, r2, lo, hi, max_iter, ws)
            cost = _residual(sig, tr, r2, s0, ws("t1", sig.shape[1]), ws.dt)
    if floor:
        ws64 = getattr(local, "ws64", None)
        if ws64 is None:
            ws64 = local.ws64 = _Workspace(*ws.shape, ws.dt, dtype=np.float64)
        r2, s0, c, cost = _nlls_floor(sig, tr, r2, s0, cost, lo, hi, max_iter, ws64)
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


def _arlo(sig, dte, ws):
    """ARLO R2* (1/s) of evenly spaced echoes ``dte`` (s) apart (Pei et al. 2015, eq. 6).

    With Simpson integrals ``s_i = ΔTE/3 · (S_i + 4 S_i+1 + S_i+2)`` and differences
    ``d_i = S_i − S_i+2``: ``T2* = (Σs² + ΔTE/3 Σsd) / (ΔTE/3 Σd² + Σsd)``.
    """
    n_echoes, m = sig.shape
    k = _F32(dte / 3)
    d = np.subtract(sig[:-2], sig[2:], out=ws("t1", m, slice(2, None)))
    s = np.multiply(sig[1:-1], _F32(4), out=ws("t2", m, slice(2, None)))
    s += sig[:-2]
    s += sig[2:]
    s *= k
    ss = np.einsum("ij,ij->j", s, s)
    sd = np.einsum("ij,ij->j", s, d)
    dd = np.einsum("ij,ij->j", d, d)
    return (sd + k * dd) / (ss + k * sd)


def _loglinear(sig, tr, lo, hi, ws):
    """Log-linear fit weighted by S²: R2* (1/s, clipped) and the signal at ``tr = 0``."""
    m = sig.shape[1]
    tmean = float(tr.mean())
    tc = (tr - tmean)[:, None]  # centred times: well-conditioned normal equations
    w = np.multiply(sig, sig, out=ws("t1", m))
    y = np.log(sig, out=ws("t2", m))
    wt = np.multiply(w, tc, out=ws("t3", m))
    sw = w.sum(axis=0)
    swy = np.einsum("ij,ij->j", w, y)
    swt = wt.sum(axis=0)
    swty = np.einsum("ij,ij->j", wt, y)
    swtt = np.multiply(wt, tc, out=w).sum(axis=0)
    r2 = (swt * swy - sw * swty) / (sw * swtt - swt * swt)
    np.clip(r2, lo, hi, out=r2)
    log_s0 = (swy + r2 * swt) / sw + r2 * _F32(tmean)
    return r2, np.exp(log_s0)


def _decay(tr, r2, out, dt=None):
    """``exp(−R2*·tr)`` as an (n_echoes, n_voxels) array, written into ``out``.

    With evenly spaced echoes ``dt`` (s) apart (and ``tr[0] = 0``) the rows are powers of
    ``exp(−R2*·dt)``, built by products: one exponential per voxel instead of one per echo.
    """
    if dt is None:
        np.multiply.outer(-tr, r2, out=out)
        return np.exp(out, out=out)
    out[0] = 1
    q = np.exp(r2 * out.dtype.type(-dt), out=out[1])
    for k in range(2, out.shape[0]):
        np.multiply(out[k - 1], q, out=out[k])
    return out


def _residual(sig, tr, r2, s0, out, dt, floor=None):
    """Sum of squared residuals of ``s0 · exp(−r2·tr) (+ floor)``; ``out`` is scratch."""
    r = _decay(tr, r2, out, dt)
    r *= s0
    if floor is not None:
        r += floor
    np.subtract(sig, r, out=r)
    return np.einsum("ij,ij->j", r, r)


def _amplitude_fit(sig, tr, r2, ws):
    """Least-squares S0 for a fixed R2*, and the sum of squared residuals."""
    e = _decay(tr, r2, ws("t1", sig.shape[1]), ws.dt)
    s0 = np.einsum("ij,ij->j", sig, e) / np.einsum("ij,ij->j", e, e)
    e *= s0
    np.subtract(sig, e, out=e)
    return s0, np.einsum("ij,ij->j", e, e)


def _eval_plain(sig, tr, r2, ws):
    """Derivatives of the projected cost of ``S0·exp(−R2*·tr)`` at R2* = ``r2``.

    For a given R2* the least-squares S0 is ``a / b`` with ``a = ⟨S, e⟩``, ``b = ⟨e, e⟩``,
    ``e = exp(−R2*·tr)``, leaving the cost ``C = ‖S‖² − a²/b``. Returns ``C'/2``, ``C''/2``
    (exact; Kaufman's Gauss–Newton curvature ``S0² ‖P⊥(tr·e)‖²`` where the exact one is not
    positive, i.e. far from a minimum), S0 and ``None`` (no floor).
    """
    m = sig.shape[1]
    e = _decay(tr, r2, ws("t1", m), ws.dt)
    b = np.einsum("ij,ij->j", e, e)
    s0 = np.einsum("ij,ij->j", sig, e) / b
    e1, s1, t1 = e[1:], sig[1:], tr[1:, None]  # tr[0] = 0: the first echo drops out
    te = np.multiply(e1, t1, out=ws("t2", m, slice(1, None)))
    b1 = np.einsum("ij,ij->j", te, e1)  # b' = −2 b1, b'' = 4 b2, a' = −a1, a'' = a2
    b2 = np.einsum("ij,ij->j", te, te)
    a1 = np.einsum("ij,ij->j", te, s1)
    a2 = np.einsum("ij,ij->j", np.multiply(te, t1, out=te), s1)
    grad = s0 * (a1 - s0 * b1)
    v = 2 * s0 * b1 - a1
    curv = 2 * s0 * s0 * b2 - s0 * a2 - v * v / b
    gauss_newton = s0 * s0 * (b2 - b1 * b1 / b)
    return grad, np.where(curv > 0, curv, gauss_newton), s0, None


def _eval_floor(sig, tr, r2, ws):
    """As :func:`_eval_plain` for ``S0·exp(−R2*·tr) + c`` (float64: S0 and c trade off).

    The linear parameters ``x = (S0, c)`` solve ``G x = u`` with ``G = BᵀB``, ``u = BᵀS``,
    ``B = [e, 1]``; then ``C'/2 = −S0 ⟨tr·e, r⟩`` and
    ``C''/2 = 2 b2 S0² + d2 S0 c − a2 S0 − vᵀG⁻¹v`` with ``v = u' − G'x``.
    """
    n, m = sig.shape
    e = _decay(tr, r2, ws("t1", m), ws.dt)
    se = e.sum(axis=0)
    b = np.einsum("ij,ij->j", e, e)
    a = np.einsum("ij,ij->j", sig, e)
    total = sig.sum(axis=0)
    det = n * b - se * se
    s0 = (n * a - se * total) / det
    c = (b * total - se * a) / det
    e1, s1, t1 = e[1:], sig[1:], tr[1:, None]
    te = np.multiply(e1, t1, out=ws("t2", m, slice(1, None)))
    b1 = np.einsum("ij,ij->j", te, e1)
    b2 = np.einsum("ij,ij->j", te, te)
    d1 = te.sum(axis=0)
    a1 = np.einsum("ij,ij->j", te, s1)
    t2e = np.multiply(te, t1, out=te)
    a2 = np.einsum("ij,ij->j", t2e, s1)
    d2 = t2e.sum(axis=0)
    grad = s0 * (a1 - s0 * b1 - c * d1)
    v0, v1 = 2 * s0 * b1 + c * d1 - a1, s0 * d1  # v = u' − G'x
    vgv = (b * v1 * v1 - 2 * se * v0 * v1 + n * v0 * v0) / det
    curv = 2 * b2 * s0 * s0 + d2 * s0 * c - a2 * s0 - vgv
    proj = (n * b1 * b1 - 2 * se * b1 * d1 + b * d1 * d1) / det
    gauss_newton = s0 * s0 * (b2 - proj)
    return grad, np.where(curv > 0, curv, gauss_newton), s0, c


def _minimise(evaluate, sig, tr, r2, lo, hi, max_iter, ws):
    """Minimise the projected cost over R2* in [lo, hi], every voxel at once.

    A safeguarded Newton iteration in one variable (exact first and second derivatives):
    the sign of each evaluated point's derivative tells on which side the minimum lies,
    which narrows a bracket; a step that would leave the bracket (or is not a number) is
    replaced by the secant step between the bracket's ends (regula falsi, Illinois variant).
    Voxels whose next move is below ``_XTOL_ABS + _XTOL_REL · R2*`` stop and leave the working
    set. No cost values are compared (they are ill-resolved in float32 near the minimum).
    """
    grad, curv, s0, c = evaluate(sig, tr, r2, ws)
    r2 = r2.copy()
    dtype = r2.dtype.type
    xtol_abs, xtol_rel, half = dtype(_XTOL_ABS), dtype(_XTOL_REL), dtype(0.5)
    act = None  # indices of the working set into the chunk (None: all voxels)
    w_sig, w_r2 = sig, r2
    below = np.full_like(r2, -np.inf)  # the minimum lies above `below` and below `above`
    above = np.full_like(r2, np.inf)
    g_below = np.zeros_like(r2)  # the derivatives there (< 0 and > 0)
    g_above = np.zeros_like(r2)
    moved_above = np.zeros(r2.shape, dtype=bool)  # did the last evaluation move `above`?
    for _ in range(max_iter):
        up, down = grad < 0, grad > 0
        # Illinois rule: an end kept twice in a row has its derivative halved, so that
        # secant steps cannot creep towards the other end.
        np.multiply(g_below, half, out=g_below, where=down & moved_above)
        np.multiply(g_above, half, out=g_above, where=up & ~moved_above)
        np.copyto(moved_above, down, where=up | down)
        np.copyto(below, w_r2, where=up)
        np.copyto(g_below, grad, where=up)
        np.copyto(above, w_r2, where=down)
        np.copyto(g_above, grad, where=down)
        trial = np.clip(w_r2 - grad / curv, lo, hi)
        inside = (trial > below) & (trial < above)  # False for NaN
        if not inside.all():
            # Without two ends the point is at a bound or has converged: it stays.
            secant = below - g_below * (above - below) / (g_above - g_below)
            trial = np.where(inside, trial, np.where(np.isfinite(secant), secant, w_r2))
        moving = np.abs(trial - w_r2) > xtol_abs + xtol_rel * w_r2
        n_moving = int(np.count_nonzero(moving))
        if n_moving == 0:
            break
        if n_moving < 0.9 * moving.size:  # shrink the working set (ping-pong buffers)
            act = np.flatnonzero(moving) if act is None else act[moving]
            w_sig = np.compress(moving, w_sig, axis=1, out=ws("work", n_moving))
            ws.swap("work", "work2")
            trial, below, above = trial[moving], below[moving], above[moving]
            g_below, g_above = g_below[moving], g_above[moving]
            moved_above = moved_above[moving]
        grad, curv, t_s0, t_c = evaluate(w_sig, tr, trial, ws)
        w_r2 = trial
        where = slice(None) if act is None else act
        r2[where], s0[where] = trial, t_s0
        if c is not None:
            c[where] = t_c
    return r2, s0, c


def _nlls_floor(sig, tr, r2, s0, cost, lo, hi, max_iter, ws64):
    """Fit with a constant floor from the plain fit; keep the plain fit where c < 0."""
    m = sig.shape[1]
    sig64 = ws64("sig", m)
    sig64[...] = sig
    tr64 = tr.astype(np.float64)
    f_r2, f_s0, f_c = _minimise(_eval_floor, sig64, tr64, r2.astype(np.float64), lo, hi,
                                max_iter, ws64)
    f_cost = _residual(sig64, tr64, f_r2, f_s0, ws64("t1", m), ws64.dt, floor=f_c)
    use = np.isfinite(f_r2) & (f_s0 > 0) & (f_c >= 0) & (f_cost <= cost)
    c = np.where(use, f_c, 0).astype(_F32)
    return (np.where(use, f_r2, r2).astype(_F32), np.where(use, f_s0, s0).astype(_F32), c,
            np.where(use, f_cost, cost).astype(_F32))
