"""k-space kernels and FFT helpers shared by the QSM stages (real FFTs, float32).

All kernels live on the half-spectrum grid of ``scipy.fft.rfftn`` for a (padded) real
volume: shape ``(N0, N1, N2 // 2 + 1)``, spatial frequencies in 1/mm.

* :func:`dipole_kernel` — D(k) = 1/3 − (k·b̂)²/|k|², D(0) = 0 [1]_.
* :func:`sphere_kernel` — the spherical-mean-value (SMV) kernel of radius r [2]_.
* :func:`laplacian_kernel` — the 7-point discrete Laplacian (1/mm²).
* :func:`gradient_power` — Σᵢ |Eᵢ(k)|² of forward differences (1/mm²).

References
----------
.. [1] Salomir R, de Senneville BD, Moonen CT (2003) A fast calculation method for magnetic
   field inhomogeneity due to an arbitrary distribution of bulk susceptibility. Concepts Magn
   Reson B 19B:26-34. doi:10.1002/cmr.b.10083
.. [2] Schweser F, Deistung A, Lehr BW, Reichenbach JR (2011) Quantitative imaging of
   intrinsic magnetic tissue properties using MRI signal phase. NeuroImage 54:2789-2807.
   doi:10.1016/j.neuroimage.2010.10.070
"""

from __future__ import annotations

import numpy as np
from scipy import fft

__all__ = ["dipole_kernel", "fft_shape", "forward", "gradient_power", "inverse",
           "laplacian_kernel", "sphere_kernel"]


def fft_shape(shape, pad_voxels=0) -> tuple[int, int, int]:
    """A fast real-FFT grid for a volume padded on every side.

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape (voxels).
    pad_voxels : int
        Padding per side (voxels).

    Returns
    -------
    tuple of 3 int
        ``scipy.fft.next_fast_len(n + 2 * pad_voxels)`` per axis (voxels).
    """
    return tuple(int(fft.next_fast_len(int(s) + 2 * int(pad_voxels), real=True))
                 for s in shape)


def forward(x: np.ndarray, shape, workers: int = 1) -> np.ndarray:
    """Real FFT of a volume zero-padded at the end of each axis.

    Parameters
    ----------
    x : (X, Y, Z) ndarray
        Volume (any units), cast to float32.
    shape : tuple of 3 int
        FFT grid (voxels), each ≥ the volume's.
    workers : int
        FFT threads.

    Returns
    -------
    (N0, N1, N2 // 2 + 1) complex64 ndarray
        Half spectrum (units of ``x`` × voxels).
    """
    return fft.rfftn(np.asarray(x, dtype=np.float32), s=shape, workers=workers)


def inverse(k: np.ndarray, shape, crop=None, workers: int = 1) -> np.ndarray:
    """Inverse real FFT, optionally cropped.

    Parameters
    ----------
    k : (N0, N1, N2 // 2 + 1) complex ndarray
        Half spectrum.
    shape : tuple of 3 int
        Real-space FFT grid (voxels).
    crop : tuple of 3 int, optional
        Keep ``[:crop[0], :crop[1], :crop[2]]`` (voxels).
    workers : int
        FFT threads.

    Returns
    -------
    float32 ndarray
        The real volume (units of the original volume).
    """
    out = fft.irfftn(k, s=shape, workers=workers).astype(np.float32, copy=False)
    if crop is not None:
        out = out[: crop[0], : crop[1], : crop[2]]
    return out


def _frequencies(shape, voxel_size):
    """Sparse 1/mm frequency grids (k0, k1, k2) of the rfftn half spectrum."""
    n0, n1, n2 = shape
    k0 = fft.fftfreq(n0, d=voxel_size[0]).astype(np.float32)[:, None, None]
    k1 = fft.fftfreq(n1, d=voxel_size[1]).astype(np.float32)[None, :, None]
    k2 = fft.rfftfreq(n2, d=voxel_size[2]).astype(np.float32)[None, None, :]
    return k0, k1, k2


def dipole_kernel(shape, voxel_size, b0_dir) -> np.ndarray:
    """Unit dipole kernel in k-space.

    Parameters
    ----------
    shape : tuple of 3 int
        Real-space grid (voxels) of the FFT.
    voxel_size : (3,) array_like
        Voxel size (mm).
    b0_dir : (3,) array_like
        Unit B0 direction along the voxel axes (:func:`brainiron.qsm.b0_direction`).

    Returns
    -------
    (N0, N1, N2 // 2 + 1) float32 ndarray
        D(k) = 1/3 − (k·b̂)²/|k|² (dimensionless), 0 at k = 0. The field (ppm, relative to
        B0) of a susceptibility χ (ppm) is ``irfftn(D * rfftn(χ))``.
    """
    k0, k1, k2 = _frequencies(shape, voxel_size)
    b = np.asarray(b0_dir, dtype=np.float32)
    b = b / np.linalg.norm(b)
    ksq = k0 ** 2 + k1 ** 2 + k2 ** 2
    kb = k0 * b[0] + k1 * b[1] + k2 * b[2]
    ksq[0, 0, 0] = 1.0
    d = np.float32(1 / 3) - kb ** 2 / ksq
    d[0, 0, 0] = 0.0
    return d.astype(np.float32, copy=False)


def sphere_kernel(shape, voxel_size, radius_mm: float, workers: int = 1) -> np.ndarray:
    """Spherical mean value kernel (unit sum) of radius ``radius_mm``, in k-space.

    Parameters
    ----------
    shape : tuple of 3 int
        Real-space grid (voxels) of the FFT.
    voxel_size : (3,) array_like
        Voxel size (mm).
    radius_mm : float
        Sphere radius (mm); voxels whose centre lies within it belong to the sphere.
    workers : int
        FFT threads.

    Returns
    -------
    (N0, N1, N2 // 2 + 1) float32 ndarray
        The (real) Fourier transform of the normalised sphere centred at voxel 0; its value
        at k = 0 is 1.
    """
    axes = []
    for n, h in zip(shape, voxel_size, strict=True):
        i = np.arange(n)
        axes.append((np.minimum(i, n - i) * h).astype(np.float32))
    r2 = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
          + axes[2][None, None, :] ** 2)
    sphere = (r2 <= radius_mm ** 2).astype(np.float32)
    sphere /= sphere.sum()
    return fft.rfftn(sphere, workers=workers).real.astype(np.float32)


def laplacian_kernel(shape, voxel_size) -> np.ndarray:
    """The 7-point discrete Laplacian in k-space.

    Parameters
    ----------
    shape : tuple of 3 int
        Real-space FFT grid (voxels).
    voxel_size : (3,) array_like
        Voxel size (mm).

    Returns
    -------
    (N0, N1, N2 // 2 + 1) float32 ndarray
        Σᵢ (2 cos(2πkᵢ/Nᵢ) − 2) / hᵢ² (1/mm²): ≤ 0, 0 at k = 0.
    """
    out = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), dtype=np.float32)
    for axis, (n, h) in enumerate(zip(shape, voxel_size, strict=True)):
        m = n if axis < 2 else n // 2 + 1
        k = np.arange(m, dtype=np.float32)
        term = (2 * np.cos(2 * np.pi * k / n) - 2) / h ** 2
        out += term.reshape([-1 if a == axis else 1 for a in range(3)]).astype(np.float32)
    return out


def gradient_power(shape, voxel_size) -> np.ndarray:
    """Σᵢ |Eᵢ(k)|² of the periodic forward differences.

    Parameters
    ----------
    shape : tuple of 3 int
        Real-space FFT grid (voxels).
    voxel_size : (3,) array_like
        Voxel size (mm).

    Returns
    -------
    (N0, N1, N2 // 2 + 1) float32 ndarray
        |E(k)|² (1/mm²), the negative of :func:`laplacian_kernel`.
    """
    return -laplacian_kernel(shape, voxel_size)
