"""Forward model: χ (ppm) → field → multi-echo complex GRE signal (phase wraps, noise).

Used by brainiron's phantom and by round-trip tests; the accuracy validation uses a peer's
forward model (qsm-forward), not this one.

field(ppm) = F⁻¹[D(k) F[χ]] [1]_; phase = 2π·γ̄·B0·field·TE + φ₀ (γ̄ in MHz/T, B0 in T,
field in ppm, TE in s → rad); signal = S₀·e^(−R2*·TE)·e^(i·phase) + complex Gaussian noise of
SD S₀_max / SNR per channel; the returned phase is wrapped to (−π, π].

References
----------
.. [1] Salomir R, de Senneville BD, Moonen CT (2003) Concepts Magn Reson B 19B:26-34.
   doi:10.1002/cmr.b.10083; Marques JP, Bowtell R (2005) Application of a Fourier-based
   method for rapid calculation of field inhomogeneity due to spatial variation of magnetic
   susceptibility. Concepts Magn Reson B 25B:65-78. doi:10.1002/cmr.b.20034
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .constants import gamma_bar_mhz_per_t

__all__ = ["dipole_field", "simulate_echoes"]


def dipole_field(chi: np.ndarray, voxel_size, b0_dir, pad_voxels: int | None = None,
                 workers: int = 1) -> np.ndarray:
    """Field of a susceptibility distribution (dipole convolution in k-space).

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        χ (ppm), relative to the value at the volume's edge (the padding is that value).
    voxel_size : (3,) array_like
        Voxel size (mm).
    b0_dir : (3,) array_like
        Unit B0 direction along the voxel axes.
    pad_voxels : int, optional
        Padding per side (default: half the largest dimension, against wrap-around).
    workers : int
        FFT threads.

    Returns
    -------
    (X, Y, Z) float32 ndarray
        Field (ppm of B0), mean-free over the padded grid.
    """
    chi = np.asarray(chi, np.float32)
    pad = max(chi.shape) // 2 if pad_voxels is None else pad_voxels
    edge = np.float32(chi[0, 0, 0])
    shape = kernels.fft_shape(chi.shape, pad)
    d = kernels.dipole_kernel(shape, voxel_size, b0_dir)
    return kernels.inverse(d * kernels.forward(chi - edge, shape, workers), shape, chi.shape,
                           workers)


def simulate_echoes(field_ppm: np.ndarray, s0: np.ndarray, r2star: np.ndarray, echo_times,
                    field_strength_t: float, phase_offset: np.ndarray | float = 0.0,
                    snr: float = np.inf, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multi-echo GRE magnitude and wrapped phase from a field map.

    Parameters
    ----------
    field_ppm : (X, Y, Z) ndarray
        Field (ppm of B0).
    s0 : (X, Y, Z) ndarray
        Signal at TE = 0 (any units; 0 outside the object).
    r2star : (X, Y, Z) ndarray or float
        R2* (1/s).
    echo_times : (E,) array_like
        Echo times (s).
    field_strength_t : float
        B0 (T).
    phase_offset : (X, Y, Z) ndarray or float
        Echo-independent phase φ₀ (rad).
    snr : float
        max(S₀) / noise SD per channel (``inf``: no noise).
    seed : int
        Seed of the noise.

    Returns
    -------
    magnitude : (X, Y, Z, E) float32 ndarray
        |signal| (units of ``s0``).
    phase : (X, Y, Z, E) float32 ndarray
        Wrapped phase (rad) in (−π, π].
    """
    te = np.asarray(echo_times, dtype=np.float64)
    omega = 2 * np.pi * gamma_bar_mhz_per_t() * field_strength_t * np.asarray(field_ppm)
    s0 = np.asarray(s0, np.float64)
    off = np.asarray(phase_offset, np.float64)
    off = off[..., None] if off.ndim else off
    decay = np.exp(-np.asarray(r2star, np.float64)[..., None] * te) if np.ndim(r2star) \
        else np.exp(-float(r2star) * te)
    sig = s0[..., None] * decay * np.exp(1j * (omega[..., None] * te + off))
    if np.isfinite(snr):
        rng = np.random.default_rng(seed)
        sd = s0.max() / snr
        sig = sig + sd * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    return np.abs(sig).astype(np.float32), np.angle(sig).astype(np.float32)
