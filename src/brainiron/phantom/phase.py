"""The phantom's MEGRE phase: its χ through the dipole kernel, a background field, an offset.

field (ppm) = F⁻¹[D(k)·F[χ]] (the brain's true χ, 0 outside; :func:`brainiron.qsm.dipole_field`)
+ the field of air-like spheres outside the brain (Δχ of air against tissue from
``qsm_constants.tsv``; outside a sphere of radius a the field is exactly Δχ/3·(a/r)³·(3cos²θ−1)
with θ the angle to B0 [1]_, so it is harmonic in the brain: the background that background
removal must take out) + a weak linear shim residual. The phase of echo n is
2π·γ̄·B0·field·TEₙ + φ₀ with a smooth offset φ₀, plus the angle of the same complex noise that
made the Rician magnitude (the magnitude stays what it was), wrapped to (−π, π].

References
----------
.. [1] Schenck JF (1996) The role of magnetic susceptibility in magnetic resonance imaging.
   Med Phys 23:815-850. doi:10.1118/1.597854
"""

from __future__ import annotations

import numpy as np

from ..qsm import b0_direction, dipole_field, gamma_bar_mhz_per_t, voxel_sizes
from ..qsm.constants import constant
from .geometry import smooth_field

__all__ = ["phase_model"]

#: Air-like spheres: centre offsets from the brain's centroid in units of its half extent
#: along world x, y, z (RAS) — a frontal sinus below the frontal lobe, two mastoid / ear canals.
_SPHERES = ((0.0, 1.1, -0.9), (-1.25, -0.1, -0.7), (1.25, -0.1, -0.7))
#: Sphere radius as a fraction of its centre's distance to the nearest brain voxel.
_RADIUS_FRACTION = 0.35
#: Linear shim residual (ppm per mm along world x, y, z).
_SHIM_PPM_PER_MM = (0.0005, -0.0008, 0.001)
#: Smooth phase offset φ₀: mean and amplitude (rad).
_OFFSET_RAD = (0.6, 1.2)


def _world(shape, affine) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, (X, Y, Z, 3) float32."""
    idx = np.indices(shape, dtype=np.float32)
    a = np.asarray(affine, np.float32)
    return np.einsum("ij,j...->...i", a[:3, :3], idx) + a[:3, 3]


def _background(world: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Field (ppm) of the air-like spheres and the shim residual, on every voxel."""
    inside = world[brain]
    centre = inside.mean(0)
    half = (inside.max(0) - inside.min(0)) / 2
    delta_chi = constant("chi_air_minus_tissue")
    field = world @ np.asarray(_SHIM_PPM_PER_MM, np.float32)
    field = field - float(field[brain].mean())
    for offset in _SPHERES:
        c = centre + np.asarray(offset, np.float32) * half
        dist = float(np.sqrt(((inside - c) ** 2).sum(1)).min())
        a = _RADIUS_FRACTION * dist
        r = world - c
        r2 = np.maximum((r ** 2).sum(-1), a * a)  # inside the sphere: its surface value
        cos2 = r[..., 2] ** 2 / r2
        field += np.float32(delta_chi / 3) * (a * a / r2) ** 1.5 * (3 * cos2 - 1)
    return field.astype(np.float32)


def phase_model(chi: np.ndarray, brain: np.ndarray, affine: np.ndarray, rng
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Total field and phase offset of a phantom subject.

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        True χ (ppm), 0 outside the brain.
    brain : (X, Y, Z) bool ndarray
        The brain (where the magnitude has signal).
    affine : (4, 4) ndarray
        Voxel → world (mm); B0 is along world z.
    rng : numpy.random.Generator
        Source of the smooth offset.

    Returns
    -------
    field : (X, Y, Z) float32 ndarray
        Field (ppm of B0): the brain's dipole field plus the background field.
    offset : (X, Y, Z) float32 ndarray
        Echo-independent phase φ₀ (rad).
    omega_per_ppm : float
        2π·γ̄ (rad/s per ppm per tesla): multiply by B0 (T) · field (ppm) · TE (s) for rad.
    """
    shape = chi.shape
    local = dipole_field(chi, voxel_sizes(affine), b0_direction(affine))
    field = local + _background(_world(shape, affine), brain)
    mean, amp = _OFFSET_RAD
    offset = (mean + amp * smooth_field(shape, (3, 3, 3), rng)[0]).astype(np.float32)
    return field.astype(np.float32), offset, 2 * np.pi * gamma_bar_mhz_per_t()
