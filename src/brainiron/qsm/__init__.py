"""QSM from multi-echo GRE phase: arrays and affines in, χ (ppm) out.

Public API
----------
reconstruct(magnitude, phase, echo_times_s, affine, field_strength_T, settings, ...)
    The whole chain; returns (chi_ppm, local_field_ppm, mask, record).
QSMSettings
    Algorithms and parameters (frozen dataclass).
phase_to_radians, wrap
    Phase scaling detection (:mod:`.scaling`).
b0_direction, voxel_sizes
    Geometry (:mod:`.geometry`).
unwrap_exact, unwrap_laplacian
    Spatial unwrapping (:mod:`.unwrap`).
remove_phase_offset, unwrap_echoes, fit_field
    Multi-echo combination (:mod:`.echoes`).
qsm_mask
    Magnitude + phase-quality mask (:mod:`.masking`).
vsharp, pdf
    Background field removal (:mod:`.background`).
invert_tv_admm, invert_l2, invert_tkd
    Dipole inversion (:mod:`.inversion`).
reference_chi
    Referencing (:mod:`.reference`).
dipole_kernel, sphere_kernel
    k-space kernels (:mod:`.kernels`).
dipole_field, simulate_echoes
    Forward model (:mod:`.forward`).
gamma_bar_mhz_per_t
    γ̄ from the constants table (:mod:`.constants`).
qsm_sidecars, describe
    JSON sidecars of the χ map, local field and mask; the report's methods sentence
    (:mod:`.sidecar`).
"""

from .background import pdf, vsharp
from .constants import gamma_bar_mhz_per_t
from .echoes import fit_field, remove_phase_offset, unwrap_echoes
from .forward import dipole_field, simulate_echoes
from .geometry import b0_direction, voxel_sizes
from .inversion import invert_l2, invert_tkd, invert_tv_admm
from .kernels import dipole_kernel, sphere_kernel
from .masking import qsm_mask
from .pipeline import reconstruct
from .reference import reference_chi
from .scaling import phase_to_radians, wrap
from .settings import QSMSettings
from .sidecar import describe, qsm_sidecars
from .unwrap import unwrap_exact, unwrap_laplacian

__all__ = [
    "QSMSettings",
    "b0_direction",
    "describe",
    "dipole_field",
    "dipole_kernel",
    "fit_field",
    "gamma_bar_mhz_per_t",
    "invert_l2",
    "invert_tkd",
    "invert_tv_admm",
    "pdf",
    "phase_to_radians",
    "qsm_mask",
    "qsm_sidecars",
    "reconstruct",
    "reference_chi",
    "remove_phase_offset",
    "simulate_echoes",
    "sphere_kernel",
    "unwrap_echoes",
    "unwrap_exact",
    "unwrap_laplacian",
    "voxel_sizes",
    "vsharp",
    "wrap",
]
