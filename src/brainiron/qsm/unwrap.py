"""Spatial phase unwrapping: exact quality-guided (default) and Laplacian.

* :func:`unwrap_exact` — scikit-image's 3-D reliability-sorting unwrapper [1]_: the result
  differs from the input by integer multiples of 2π voxel by voxel (re-wrapping gives the
  input back), with jumps placed where the phase is least reliable.
* :func:`unwrap_laplacian` — the Laplacian unwrapper [2]_: φ = ∇⁻²(cos φ ∇² sin φ −
  sin φ ∇² cos φ). Not exact (it also removes a harmonic part), robust to noise, fast.

References
----------
.. [1] Herráez MA, Burton DR, Lalor MJ, Gdeisat MA (2002) Fast two-dimensional phase-unwrapping
   algorithm based on sorting by reliability following a noncontinuous path. Appl Opt
   41:7437-7444; Abdul-Rahman H et al. (2007) Fast and robust three-dimensional best path
   phase unwrapping algorithm. Appl Opt 46:6623-6635. doi:10.1364/AO.46.006623
.. [2] Schofield MA, Zhu Y (2003) Fast phase unwrapping algorithm for interferometric
   applications. Opt Lett 28:1194-1196. doi:10.1364/OL.28.001194
"""

from __future__ import annotations

import numpy as np

from . import kernels

__all__ = ["unwrap_exact", "unwrap_laplacian"]


def unwrap_exact(phase: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Exact 3-D quality-guided unwrapping (``skimage.restoration.unwrap_phase``).

    Parameters
    ----------
    phase : (X, Y, Z) ndarray
        Wrapped phase (rad).
    mask : (X, Y, Z) bool ndarray, optional
        Voxels to unwrap; outside, the output is 0. Disconnected parts of the mask are
        unwrapped independently (each up to its own multiple of 2π).

    Returns
    -------
    (X, Y, Z) float32 ndarray
        Unwrapped phase (rad): ``phase + 2πk`` with integer ``k`` inside the mask.
    """
    from skimage.restoration import unwrap_phase

    p = np.asarray(phase, dtype=np.float64)
    if mask is None:
        return unwrap_phase(p).astype(np.float32)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(p.shape, dtype=np.float32)
    out = unwrap_phase(np.ma.masked_array(p, mask=~mask))
    return np.ma.filled(out, 0.0).astype(np.float32)


def unwrap_laplacian(phase: np.ndarray, voxel_size, pad_voxels: int = 8,
                     workers: int = 1) -> np.ndarray:
    """Laplacian phase unwrapping.

    Parameters
    ----------
    phase : (X, Y, Z) ndarray
        Wrapped phase (rad).
    voxel_size : (3,) array_like
        Voxel size (mm).
    pad_voxels : int
        Zero padding on every side before the FFTs (voxels).
    workers : int
        FFT threads.

    Returns
    -------
    (X, Y, Z) float32 ndarray
        Unwrapped phase (rad), mean-free over the padded grid; not an exact 2π-multiple
        correction of the input (harmonic components are lost, to be removed anyway by
        background field removal).
    """
    p = np.asarray(phase, dtype=np.float32)
    shape = kernels.fft_shape(p.shape, pad_voxels)
    lap = kernels.laplacian_kernel(shape, voxel_size)
    s, c = np.sin(p), np.cos(p)
    lap_s = kernels.inverse(lap * kernels.forward(s, shape, workers), shape, p.shape, workers)
    lap_c = kernels.inverse(lap * kernels.forward(c, shape, workers), shape, p.shape, workers)
    rhs = c * lap_s - s * lap_c
    inv = np.zeros_like(lap)
    nz = lap != 0
    inv[nz] = 1.0 / lap[nz]
    return kernels.inverse(inv * kernels.forward(rhs, shape, workers), shape, p.shape, workers)
