"""Parameters of a phantom dataset (:class:`PhantomConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ORIENTATIONS", "PhantomConfig"]

#: Voxel-grid orientations of the phantom subjects (``mixed`` cycles through them).
ORIENTATIONS = ("RAS", "LPS", "oblique")


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of a phantom dataset.

    Attributes
    ----------
    n_subjects : int
        Number of subjects; groups alternate ``control``, ``rls``, ``control``, ...
    seed : int
        Seed of every random draw; a subject's data depend only on (seed, subject number).
    voxel_size : tuple of 3 float
        Voxel size in mm (anisotropic allowed).
    field_strength : float
        B0 in tesla (recorded in sidecars; scales the iron-dependent part of R2*).
    echo_times : tuple of float
        Echo times in s of the multi-echo GRE.
    snr : float
        Signal-to-noise ratio of the first echo in white matter (Rician noise).
    rls_sn_effect : float
        Fractional iron change in SN (SNc_PBP_VTA and SNr) of the ``rls`` group (−0.15 =
        15 % lower). Other regions follow ``phantom_tissues.tsv``.
    between_subject_cv : float
        Coefficient of variation of regional iron between subjects of one age and group.
    chi_noise_ppm, r2star_noise_per_s : float
        SD of the Gaussian noise added to the χ and R2* maps.
    orientation : str
        ``RAS``, ``LPS``, ``oblique`` or ``mixed`` (cycles through the three by subject).
    coverage : float
        Fraction of the brain's extent kept along the slice axis (1 = whole brain), centred
        on the midbrain: partial-coverage slabs as in many QSM protocols.
    max_rotation_deg, max_translation_mm, max_scaling, max_displacement_mm : float
        Limits of the random deformation.
    chi_calibration, r2star_calibration : str
        Names in ``calibrations.tsv`` used to go from iron to χ and R2*.
    with_t1w, with_chimap, with_r2starmap, with_megre : bool
        Which images to write (e.g. ``with_r2starmap=False`` leaves R2* to the relaxometry
        stage; ``with_t1w=False`` makes a subject register on its magnitude or χ map).
    age_range : tuple of float
        Ages are drawn uniformly in this range (years).
    participants : tuple of str
        Subject labels (default ``01``, ``02``, ...).
    """

    n_subjects: int = 4
    seed: int = 0
    voxel_size: tuple[float, float, float] = (2.5, 2.5, 2.5)
    field_strength: float = 3.0
    echo_times: tuple[float, ...] = tuple(round(0.004 + 0.005 * k, 4) for k in range(8))
    snr: float = 100.0
    rls_sn_effect: float = -0.15
    between_subject_cv: float = 0.08
    chi_noise_ppm: float = 0.01
    r2star_noise_per_s: float = 1.0
    orientation: str = "mixed"
    coverage: float = 1.0
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 10.0
    max_scaling: float = 0.05
    max_displacement_mm: float = 5.0
    chi_calibration: str = "langkammer2012_chi"
    r2star_calibration: str = "gelman1999_invivo_r2star"
    with_t1w: bool = True
    with_chimap: bool = True
    with_r2starmap: bool = True
    with_megre: bool = True
    age_range: tuple[float, float] = (25.0, 75.0)
    participants: tuple[str, ...] = field(default=())

    def __post_init__(self):
        vs = tuple(float(v) for v in np.broadcast_to(np.asarray(self.voxel_size, float), (3,)))
        object.__setattr__(self, "voxel_size", vs)
        if min(vs) <= 0:
            raise ValueError(f"voxel size must be positive, got {vs}")
        if self.n_subjects < 1:
            raise ValueError("a phantom needs at least one subject")
        if self.orientation not in (*ORIENTATIONS, "mixed"):
            raise ValueError(f"orientation must be one of {ORIENTATIONS + ('mixed',)}")
        if not 0.1 <= self.coverage <= 1.0:
            raise ValueError("coverage must lie in [0.1, 1]")
        tes = np.asarray(self.echo_times, float)
        if tes.size < 2 or np.any(np.diff(tes) <= 0) or tes[0] <= 0:
            raise ValueError("echo_times must be >= 2 increasing positive values in s")
        if self.participants and len(self.participants) != self.n_subjects:
            raise ValueError("participants must have n_subjects labels")

    @property
    def subject_labels(self) -> tuple[str, ...]:
        """Subject labels: ``participants`` if given, else 01, 02, ..."""
        return self.participants or tuple(f"{i + 1:02d}" for i in range(self.n_subjects))

