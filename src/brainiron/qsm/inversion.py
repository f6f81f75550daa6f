"""Dipole inversion: local field (ppm) → susceptibility χ (ppm).

* :func:`invert_tv_admm` (default) — total-variation regularised, weighted linear data term,
  solved by ADMM with closed-form k-space and voxel-wise updates (FANSI-like) [1]_ [2]_:
  min ½‖W(Dχ − f)‖² + λ‖∇χ‖₁.
* :func:`invert_l2` — closed-form gradient-regularised L2 (Tikhonov) [3]_:
  χ̂ = D f̂ / (D² + λ|E|²). One FFT pair: fast, smooth.
* :func:`invert_tkd` — thresholded k-space division [4]_, the reference: 1/D with |D|
  clamped at ``threshold`` (sign kept). Underestimates χ by a few % to 20 %.

All work on the volume zero-padded by ``pad_voxels``; χ is 0 outside the mask. The mean of χ
is undetermined (D(0) = 0): reference it afterwards (:func:`brainiron.qsm.reference_chi`).

References
----------
.. [1] Bilgic B, Chatnuntawech I, Langkammer C, Setsompop K (2015) Sparse methods for
   quantitative susceptibility mapping. Proc SPIE 9597:959711. doi:10.1117/12.2188535
.. [2] Milovic C, Bilgic B, Zhao B, Acosta-Cabronero J, Tejos C (2018) Fast nonlinear
   susceptibility inversion with variational regularization. Magn Reson Med 80:814-821.
   doi:10.1002/mrm.27073
.. [3] Bilgic B, Fan AP, Polimeni JR, et al. (2014) Fast quantitative susceptibility mapping
   with L1-regularization and automatic parameter selection. Magn Reson Med 72:1444-1459.
   doi:10.1002/mrm.25029
.. [4] Shmueli K, de Zwart JA, van Gelderen P, Li TQ, Dodd SJ, Duyn JH (2009) Magnetic
   susceptibility mapping of brain tissue in vivo using MRI phase data. Magn Reson Med
   62:1510-1522. doi:10.1002/mrm.22135; Wharton S, Schaefer A, Bowtell R (2010) Magn Reson
   Med 63:1292-1304. doi:10.1002/mrm.22334
"""

from __future__ import annotations

import numpy as np

from . import kernels

__all__ = ["invert_l2", "invert_tkd", "invert_tv_admm"]


def _padded(field, mask, pad_voxels):
    """Field and mask placed in the middle of a fast FFT grid; returns (f, m, shape, slices)."""
    m = np.asarray(mask, dtype=bool)
    shape = kernels.fft_shape(m.shape, pad_voxels)
    sl = tuple(slice(pad_voxels, pad_voxels + n) for n in m.shape)
    f = np.zeros(shape, np.float32)
    f[sl] = np.asarray(field, np.float32) * m
    mp = np.zeros(shape, bool)
    mp[sl] = m
    return f, mp, shape, sl


def invert_tkd(local_field: np.ndarray, mask: np.ndarray, voxel_size, b0_dir,
               threshold: float = 0.19, pad_voxels: int = 8, workers: int = 1) -> np.ndarray:
    """Thresholded k-space division.

    Parameters
    ----------
    local_field : (X, Y, Z) ndarray
        Local field (ppm).
    mask : (X, Y, Z) bool ndarray
        Where the field is valid.
    voxel_size : (3,) array_like
        Voxel size (mm).
    b0_dir : (3,) array_like
        Unit B0 direction along the voxel axes.
    threshold : float
        |D| below this is replaced by ``sign(D) * threshold`` (dimensionless).
    pad_voxels : int
        Zero padding per side (voxels).
    workers : int
        FFT threads.

    Returns
    -------
    (X, Y, Z) float32 ndarray
        χ (ppm), 0 outside the mask.
    """
    f, mp, shape, sl = _padded(local_field, mask, pad_voxels)
    d = kernels.dipole_kernel(shape, voxel_size, b0_dir)
    clamped = np.where(np.abs(d) < threshold, np.sign(d) * threshold, d)
    inv = np.zeros_like(d)
    nz = clamped != 0
    inv[nz] = 1.0 / clamped[nz]
    inv[0, 0, 0] = 0.0
    chi = kernels.inverse(inv * kernels.forward(f, shape, workers), shape, None, workers)
    return (chi * mp)[sl]


def invert_l2(local_field: np.ndarray, mask: np.ndarray, voxel_size, b0_dir,
              lam: float = 1e-3, pad_voxels: int = 8, workers: int = 1) -> np.ndarray:
    """Closed-form L2 (Tikhonov on the gradient) inversion.

    Parameters
    ----------
    local_field : (X, Y, Z) ndarray
        Local field (ppm).
    mask : (X, Y, Z) bool ndarray
        Where the field is valid.
    voxel_size : (3,) array_like
        Voxel size (mm).
    b0_dir : (3,) array_like
        Unit B0 direction along the voxel axes.
    lam : float
        Regularisation weight λ (mm²) of ‖∇χ‖².
    pad_voxels : int
        Zero padding per side (voxels).
    workers : int
        FFT threads.

    Returns
    -------
    (X, Y, Z) float32 ndarray
        χ (ppm), 0 outside the mask.
    """
    f, mp, shape, sl = _padded(local_field, mask, pad_voxels)
    d = kernels.dipole_kernel(shape, voxel_size, b0_dir)
    denom = d ** 2 + np.float32(lam) * kernels.gradient_power(shape, voxel_size)
    denom[0, 0, 0] = 1.0
    chi = kernels.inverse(d / denom * kernels.forward(f, shape, workers), shape, None, workers)
    return (chi * mp)[sl]


def _grad(x, h, out):
    """Periodic forward differences (1/mm) of ``x`` along the three axes, into ``out``."""
    for a in range(3):
        n = x.shape[a]
        dst = np.moveaxis(out[a], a, 0)
        src = np.moveaxis(x, a, 0)
        np.subtract(src[1:], src[:-1], out=dst[:n - 1])
        np.subtract(src[:1], src[n - 1:], out=dst[n - 1:])
        dst *= np.float32(1.0 / h[a])
    return out


def _grad_adjoint(y, h, out):
    """Adjoint of :func:`_grad` (its k-space symbol times _grad's is |E|²), into ``out``."""
    out[...] = 0
    for a in range(3):
        n = out.shape[a]
        dst = np.moveaxis(out, a, 0)
        src = np.moveaxis(y[a], a, 0)
        scale = np.float32(1.0 / h[a])
        dst[1:] += (src[:-1] - src[1:]) * scale
        dst[:1] += (src[n - 1:] - src[:1]) * scale
    return out


def _soft(z, thr):
    """Soft thresholding in place: z ← sign(z)·max(|z| − thr, 0)."""
    mag = np.abs(z)
    mag -= thr
    np.maximum(mag, 0, out=mag)
    np.copysign(mag, z, out=z)
    return z


def invert_tv_admm(local_field: np.ndarray, mask: np.ndarray, voxel_size, b0_dir,
                   lam: float = 2e-4, rho: float | None = None, mu: float = 1.0,
                   weights: np.ndarray | None = None, max_iter: int = 40, tol: float = 1e-2,
                   pad_voxels: int = 8, workers: int = 1) -> tuple[np.ndarray, dict]:
    """TV-regularised dipole inversion by ADMM (weighted linear data term).

    Parameters
    ----------
    local_field : (X, Y, Z) ndarray
        Local field (ppm).
    mask : (X, Y, Z) bool ndarray
        Where the field is valid (data weight 0 outside).
    voxel_size : (3,) array_like
        Voxel size (mm).
    b0_dir : (3,) array_like
        Unit B0 direction along the voxel axes.
    lam : float
        TV weight λ (ppm·mm of field per unit gradient of χ).
    rho : float, optional
        ADMM penalty of the gradient split (default ``100 * lam``).
    mu : float
        ADMM penalty of the data split (dimensionless).
    weights : (X, Y, Z) ndarray, optional
        Data weights W inside the mask (default 1).
    max_iter : int
        Iterations at most.
    tol : float
        Stop when ‖χₙ − χₙ₋₁‖ / ‖χₙ‖ < tol.
    pad_voxels : int
        Zero padding per side (voxels).
    workers : int
        FFT threads.

    Returns
    -------
    chi : (X, Y, Z) float32 ndarray
        χ (ppm), 0 outside the mask.
    info : dict
        ``iterations``, ``relative_change`` (last), ``lam``, ``rho``, ``mu``.
    """
    rho = 100.0 * lam if rho is None else rho
    f, mp, shape, sl = _padded(local_field, mask, pad_voxels)
    w2 = np.zeros(shape, np.float32)
    w2[sl] = (1.0 if weights is None else np.asarray(weights, np.float32) ** 2)
    w2 *= mp
    h = np.asarray(voxel_size, dtype=float)
    d = kernels.dipole_kernel(shape, voxel_size, b0_dir)
    denom = np.float32(mu) * d ** 2 + np.float32(rho) * kernels.gradient_power(shape, h)
    denom[0, 0, 0] = 1.0
    mu32, rho32, thr = np.float32(mu), np.float32(rho), np.float32(lam / rho)
    z = np.zeros((3, *shape), np.float32)
    u = np.zeros_like(z)
    g = np.zeros_like(z)
    work = np.zeros(shape, np.float32)
    v = f.copy()
    s = np.zeros(shape, np.float32)
    chi = np.zeros(shape, np.float32)
    w2f, w2mu = w2 * f, w2 + mu32
    change, it = np.inf, 0
    for it in range(1, max_iter + 1):  # noqa: B007
        np.subtract(v, s, out=work)
        rhs = kernels.forward(work, shape, workers)
        rhs *= mu32 * d
        np.subtract(z, u, out=g)
        rhs += rho32 * kernels.forward(_grad_adjoint(g, h, work), shape, workers)
        rhs /= denom
        rhs[0, 0, 0] = 0.0
        new = kernels.inverse(rhs, shape, None, workers)
        rhs *= d
        dchi = kernels.inverse(rhs, shape, None, workers)
        change = float(np.linalg.norm(new - chi) / max(np.linalg.norm(new), 1e-12))
        chi = new
        _grad(chi, h, g)
        np.add(g, u, out=z)  # z = soft(∇χ + u, λ/ρ)
        _soft(z, thr)
        u += g
        u -= z
        np.add(dchi, s, out=work)  # v = (W² f + μ (Dχ + s)) / (W² + μ)
        np.multiply(work, mu32, out=v)
        v += w2f
        v /= w2mu
        s += dchi
        s -= v
        if change < tol:
            break
    info = {"iterations": it, "relative_change": change, "lam": float(lam),
            "rho": float(rho), "mu": float(mu)}
    return (chi * mp)[sl], info
