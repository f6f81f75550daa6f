"""The per-voxel R2* estimators of :func:`brainiron.relaxometry.fit_r2star`, vectorised.

Arrays are ``(n_echoes, n_voxels)``: each echo is one contiguous row, so every operation is a
vectorised loop over voxels. Signals are normalised (every voxel's largest echo is 1) and the
times ``tr`` (s) are counted from the first echo (``tr[0] = 0``), so ``exp(−R2*·tr) ≤ 1``
never overflows. R2* is in 1/s throughout. Large temporaries live in a per-thread
:class:`Workspace`: freeing and re-allocating them per chunk would make the C library return
their pages to the system and fault them in again, which costs more than the arithmetic.

``arlo`` and ``loglinear`` are closed-form; ``nlls`` is :func:`minimise` of the projected cost
(:func:`eval_plain`, or :func:`eval_floor` with a constant floor, see :func:`nlls_floor`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Workspace", "amplitude_fit", "arlo", "decay", "eval_floor", "eval_plain",
           "loglinear", "minimise", "nlls_floor", "residual"]

# Convergence of nlls: stop when the R2* update is below _XTOL_ABS + _XTOL_REL · R2* (1/s).
_XTOL_ABS = 1e-4
_XTOL_REL = 1e-6
_F32 = np.float32


class Workspace:
    """Named ``(n_echoes, capacity)`` buffers of one worker thread, reused across chunks.

    Parameters
    ----------
    n_echoes : int
        Rows of every buffer.
    capacity : int
        Columns (voxels) of every buffer: the largest chunk it serves.
    dt : float or None
        The echo spacing in s when the echoes are evenly spaced (see :func:`decay`), else
        ``None``; kept as the attribute ``dt``.
    dtype : numpy dtype
        Of the buffers (float32; float64 for the noise-floor fit).

    Notes
    -----
    ``ws(name, m)`` returns the first ``m`` columns of buffer ``name`` (allocated on first use),
    ``ws(name, m, rows)`` a slice of its rows; ``ws.swap(a, b)`` exchanges two buffers.
    """

    def __init__(self, n_echoes: int, capacity: int, dt: float | None, dtype=_F32):
        self.shape, self.dtype = (n_echoes, capacity), dtype
        self.dt = dt  # the echo spacing (s) if even, for decay
        self._bufs: dict[str, np.ndarray] = {}

    def __call__(self, name: str, m: int, rows: slice | None = None) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None:
            buf = self._bufs[name] = np.empty(self.shape, self.dtype)
        return buf[:, :m] if rows is None else buf[rows, :m]

    def swap(self, a: str, b: str) -> None:
        self._bufs[a], self._bufs[b] = self._bufs.get(b), self._bufs.get(a)


def arlo(sig, dte, ws):
    """ARLO R2* (1/s) of evenly spaced echoes ``dte`` (s) apart (Pei et al. 2015, eq. 6).

    With Simpson integrals ``s_i = ΔTE/3 · (S_i + 4 S_i+1 + S_i+2)`` and differences
    ``d_i = S_i − S_i+2``: ``T2* = (Σs² + ΔTE/3 Σsd) / (ΔTE/3 Σd² + Σsd)``.

    Parameters
    ----------
    sig : (n_echoes, m) float32 ndarray
        Magnitudes, ``n_echoes ≥ 3``.
    dte : float
        Echo spacing in s.
    ws : Workspace
        Scratch buffers (``t1``, ``t2``).

    Returns
    -------
    (m,) ndarray
        R2* in 1/s, not clipped.

    References
    ----------
    .. [1] Pei M, Nguyen TD, Thimmappa ND, et al. (2015) Algorithm for fast monoexponential
       fitting based on Auto-Regression on Linear Operations (ARLO) of data. Magn Reson Med
       73:843-850.
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


def loglinear(sig, tr, lo, hi, ws):
    """Log-linear fit weighted by S²: R2* (1/s, clipped) and the signal at ``tr = 0``.

    Parameters
    ----------
    sig : (n_echoes, m) float32 ndarray
        Magnitudes, all > 0.
    tr : (n_echoes,) float32 ndarray
        Times from the first echo in s.
    lo, hi : float
        Bounds of R2* in 1/s.
    ws : Workspace
        Scratch buffers (``t1``, ``t2``, ``t3``).

    Returns
    -------
    r2 : (m,) ndarray
        R2* in 1/s, clipped to ``[lo, hi]``.
    s0 : (m,) ndarray
        Signal at ``tr = 0`` (signal units).
    """
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


def decay(tr, r2, out, dt=None):
    """``exp(−R2*·tr)`` as an (n_echoes, n_voxels) array, written into ``out``.

    With evenly spaced echoes ``dt`` (s) apart (and ``tr[0] = 0``) the rows are powers of
    ``exp(−R2*·dt)``, built by products: one exponential per voxel instead of one per echo.

    Parameters
    ----------
    tr : (n_echoes,) ndarray
        Times from the first echo in s.
    r2 : (m,) ndarray
        R2* in 1/s.
    out : (n_echoes, m) ndarray
        Destination.
    dt : float, optional
        Echo spacing in s of evenly spaced echoes.

    Returns
    -------
    (n_echoes, m) ndarray
        ``out``.
    """
    if dt is None:
        np.multiply.outer(-tr, r2, out=out)
        return np.exp(out, out=out)
    out[0] = 1
    q = np.exp(r2 * out.dtype.type(-dt), out=out[1])
    for k in range(2, out.shape[0]):
        np.multiply(out[k - 1], q, out=out[k])
    return out


def residual(sig, tr, r2, s0, out, dt, floor=None):
    """Sum of squared residuals of ``s0 · exp(−r2·tr) (+ floor)``; ``out`` is scratch.

    Parameters
    ----------
    sig : (n_echoes, m) ndarray
        Magnitudes.
    tr : (n_echoes,) ndarray
        Times from the first echo in s.
    r2, s0 : (m,) ndarray
        R2* (1/s) and the signal at ``tr = 0`` (signal units).
    out : (n_echoes, m) ndarray
        Scratch, overwritten.
    dt : float or None
        Echo spacing in s of evenly spaced echoes (see :func:`decay`).
    floor : (m,) ndarray, optional
        Constant floor (signal units).

    Returns
    -------
    (m,) ndarray
        Sum of squared residuals (signal units squared).
    """
    r = decay(tr, r2, out, dt)
    r *= s0
    if floor is not None:
        r += floor
    np.subtract(sig, r, out=r)
    return np.einsum("ij,ij->j", r, r)


def amplitude_fit(sig, tr, r2, ws):
    """Least-squares S0 for a fixed R2*, and the sum of squared residuals.

    Parameters
    ----------
    sig : (n_echoes, m) ndarray
        Magnitudes.
    tr : (n_echoes,) ndarray
        Times from the first echo in s.
    r2 : (m,) ndarray
        R2* in 1/s.
    ws : Workspace
        Scratch buffers (``t1``) and the echo spacing ``ws.dt``.

    Returns
    -------
    s0 : (m,) ndarray
        Signal at ``tr = 0`` (signal units).
    cost : (m,) ndarray
        Sum of squared residuals (signal units squared).
    """
    e = decay(tr, r2, ws("t1", sig.shape[1]), ws.dt)
    s0 = np.einsum("ij,ij->j", sig, e) / np.einsum("ij,ij->j", e, e)
    e *= s0
    np.subtract(sig, e, out=e)
    return s0, np.einsum("ij,ij->j", e, e)


def eval_plain(sig, tr, r2, ws):
    """Derivatives of the projected cost of ``S0·exp(−R2*·tr)`` at R2* = ``r2``.

    For a given R2* the least-squares S0 is ``a / b`` with ``a = ⟨S, e⟩``, ``b = ⟨e, e⟩``,
    ``e = exp(−R2*·tr)``, leaving the cost ``C = ‖S‖² − a²/b``. Returns ``C'/2``, ``C''/2``
    (exact; Kaufman's Gauss–Newton curvature ``S0² ‖P⊥(tr·e)‖²`` where the exact one is not
    positive, i.e. far from a minimum), S0 and ``None`` (no floor).

    Parameters
    ----------
    sig : (n_echoes, m) ndarray
        Magnitudes.
    tr : (n_echoes,) ndarray
        Times from the first echo in s (``tr[0] = 0``).
    r2 : (m,) ndarray
        R2* in 1/s.
    ws : Workspace
        Scratch buffers (``t1``, ``t2``) and the echo spacing ``ws.dt``.

    Returns
    -------
    grad, curv : (m,) ndarray
        Half the first and second derivative of the cost with respect to R2* (in signal²·s
        and signal²·s²).
    s0 : (m,) ndarray
        Least-squares S0 (signal units).
    None
        No floor.
    """
    m = sig.shape[1]
    e = decay(tr, r2, ws("t1", m), ws.dt)
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


def eval_floor(sig, tr, r2, ws):
    """As :func:`eval_plain` for ``S0·exp(−R2*·tr) + c`` (float64: S0 and c trade off).

    The linear parameters ``x = (S0, c)`` solve ``G x = u`` with ``G = BᵀB``, ``u = BᵀS``,
    ``B = [e, 1]``; then ``C'/2 = −S0 ⟨tr·e, r⟩`` and
    ``C''/2 = 2 b2 S0² + d2 S0 c − a2 S0 − vᵀG⁻¹v`` with ``v = u' − G'x``.

    Parameters
    ----------
    sig, tr, r2, ws
        As for :func:`eval_plain` (float64 arrays and workspace).

    Returns
    -------
    grad, curv, s0 : (m,) ndarray
        As for :func:`eval_plain`.
    c : (m,) ndarray
        Least-squares floor (signal units).
    """
    n, m = sig.shape
    e = decay(tr, r2, ws("t1", m), ws.dt)
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


def minimise(evaluate, sig, tr, r2, lo, hi, max_iter, ws):
    """Minimise the projected cost over R2* in [lo, hi], every voxel at once.

    A safeguarded Newton iteration in one variable (exact first and second derivatives):
    the sign of each evaluated point's derivative tells on which side the minimum lies,
    which narrows a bracket; a step that would leave the bracket (or is not a number) is
    replaced by the secant step between the bracket's ends (regula falsi, Illinois variant).
    Voxels whose next move is below ``1e-4 + 1e-6 · R2*`` (1/s) stop and leave the working
    set. No cost values are compared (they are ill-resolved in float32 near the minimum).

    Parameters
    ----------
    evaluate : callable
        :func:`eval_plain` or :func:`eval_floor`: ``(sig, tr, r2, ws) -> (grad, curv, s0,
        c or None)``.
    sig : (n_echoes, m) ndarray
        Magnitudes.
    tr : (n_echoes,) ndarray
        Times from the first echo in s (``tr[0] = 0``).
    r2 : (m,) ndarray
        Starting R2* in 1/s (not modified).
    lo, hi : float
        Bounds of R2* in 1/s.
    max_iter : int
        Maximum iterations.
    ws : Workspace
        Scratch buffers (those of ``evaluate``, ``work``, ``work2``).

    Returns
    -------
    r2 : (m,) ndarray
        R2* in 1/s.
    s0 : (m,) ndarray
        S0 at that R2* (signal units).
    c : (m,) ndarray or None
        The floor (signal units), ``None`` for :func:`eval_plain`.
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


def nlls_floor(sig, tr, r2, s0, cost, lo, hi, max_iter, ws64):
    """Fit with a constant floor from the plain fit; keep the plain fit where c < 0.

    Parameters
    ----------
    sig : (n_echoes, m) float32 ndarray
        Magnitudes.
    tr : (n_echoes,) float32 ndarray
        Times from the first echo in s.
    r2, s0, cost : (m,) float32 ndarray
        The plain fit: R2* (1/s), S0 (signal units), sum of squared residuals.
    lo, hi : float
        Bounds of R2* in 1/s.
    max_iter : int
        Maximum iterations of :func:`minimise`.
    ws64 : Workspace
        float64 scratch buffers.

    Returns
    -------
    r2, s0, c, cost : (m,) float32 ndarray
        R2* (1/s), S0, floor (signal units; 0 where the plain fit is kept) and the sum of
        squared residuals.
    """
    m = sig.shape[1]
    sig64 = ws64("sig", m)
    sig64[...] = sig
    tr64 = tr.astype(np.float64)
    f_r2, f_s0, f_c = minimise(eval_floor, sig64, tr64, r2.astype(np.float64), lo, hi,
                                max_iter, ws64)
    f_cost = residual(sig64, tr64, f_r2, f_s0, ws64("t1", m), ws64.dt, floor=f_c)
    use = np.isfinite(f_r2) & (f_s0 > 0) & (f_c >= 0) & (f_cost <= cost)
    c = np.where(use, f_c, 0).astype(_F32)
    return (np.where(use, f_r2, r2).astype(_F32), np.where(use, f_s0, s0).astype(_F32), c,
            np.where(use, f_cost, cost).astype(_F32))
