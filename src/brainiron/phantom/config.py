"""Parameters of a phantom dataset (:class:`PhantomConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["IMAGE_SETS", "ORIENTATIONS", "REALISTIC_FIELDS", "PhantomConfig"]

#: Voxel-grid orientations of the phantom subjects (``mixed`` cycles through them).
ORIENTATIONS = ("RAS", "LPS", "oblique")

#: Images a realistic subject gets: T1w + maps + MEGRE, maps + MEGRE, or the χ map only.
IMAGE_SETS = {"T1w": ("T1w", "Chimap", "R2starmap", "MEGRE"),
              "MEGRE": ("Chimap", "R2starmap", "MEGRE"), "Chimap": ("Chimap",),
              "magnitude": ("MEGRE",)}

#: Fields used by ``realism="realistic"`` only (left out of a basic phantom's description).
REALISTIC_FIELDS = ("realism", "t1w_voxel_size", "max_motion_deg", "max_motion_mm",
                    "image_sets", "chi_recon", "chi_outside", "chi_mask_erosion_mm",
                    "chi_streak_ppm", "wm_chi_heterogeneity_ppm", "wm_r2star_heterogeneity",
                    "n_cortical_veins", "l2_fwhm_voxels", "l2_contrast", "chi_table_age",
                    "bspline_spacing_mm")


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
    with_phase : bool
        The MEGRE echoes get ``part-phase`` twins (rad, wrapped) from the phantom's true χ
        through the dipole kernel (B0 along world z: oblique to the realistic mode's slices)
        plus a background field of air-like spheres outside the brain and a smooth phase
        offset, with the magnitude's own complex noise (:mod:`brainiron.phantom.phase`). Off
        by default (left out of the description when off). With ``with_chimap=False`` (or a
        realistic subject without a χ map) the workflow reconstructs χ from the phase.
    age_range : tuple of float
        Ages are drawn uniformly in this range (years).
    participants : tuple of str
        Subject labels (default ``01``, ``02``, ...).
    realism : str
        ``basic`` (default: every image on one grid, T1w = the template's intensity) or
        ``realistic`` (:mod:`brainiron.phantom.realistic`; the fields below apply to it only,
        ``voxel_size`` is then the maps' (GRE) voxel and ``orientation`` is ignored: the maps
        are axial-oblique, stored LPS or x-flipped).
    t1w_voxel_size : tuple of 3 float
        Voxel of the sagittal T1w grid (mm).
    max_motion_deg, max_motion_mm : float
        Bounds of the rigid head motion between the T1w and the GRE session (each rotation
        angle, each translation component).
    image_sets : tuple of str
        Keys of :data:`IMAGE_SETS` cycled through by subject (``("T1w", "MEGRE", "Chimap")``
        makes T1w-coregistered, magnitude-registered and χ-only subjects in turn;
        ``magnitude``: the MEGRE echoes only, no map, whose R2* the workflow fits).
    chi_recon : str
        ``tv`` (sharp), ``l2`` (smooth) or ``mixed`` (alternating by subject, tv first).
    chi_outside : str
        ``zero`` or ``nan``: the χ map outside its eroded brain mask.
    chi_mask_erosion_mm : float
        Erosion of the brain mask of the χ map (mm).
    chi_streak_ppm : float
        SD of the dipole-shaped streaking noise in the brain (ppm; the tv variant has half).
    wm_chi_heterogeneity_ppm, wm_r2star_heterogeneity : float
        SD of the smooth zero-mean field added to white matter in χ (ppm) and R2* (1/s).
    n_cortical_veins : int
        Random cortical veins (besides a straight-sinus-like tube, internal cerebral and
        thalamostriate veins).
    l2_fwhm_voxels, l2_contrast : float
        The l2 variant: Gaussian blur of FWHM ``l2_fwhm_voxels`` × the smallest voxel edge
        (isotropic in mm), and χ scaled by ``l2_contrast`` (L2 inversions underestimate).
    chi_table_age : float
        Age (years) of the χ table ``phantom_realistic.tsv``: iron-scaled nuclei take
        χ · Fe(subject) / Fe(norm at this age).
    bspline_spacing_mm : float
        Control-point spacing of the cubic B-spline displacement (mm).
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
    with_phase: bool = False
    age_range: tuple[float, float] = (25.0, 75.0)
    participants: tuple[str, ...] = field(default=())
    realism: str = "basic"
    t1w_voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_motion_deg: float = 5.0
    max_motion_mm: float = 5.0
    image_sets: tuple[str, ...] = ("T1w",)
    chi_recon: str = "mixed"
    chi_outside: str = "zero"
    chi_mask_erosion_mm: float = 3.0
    chi_streak_ppm: float = 0.01
    wm_chi_heterogeneity_ppm: float = 0.005
    wm_r2star_heterogeneity: float = 1.0
    n_cortical_veins: int = 12
    l2_fwhm_voxels: float = 1.25
    l2_contrast: float = 0.95
    chi_table_age: float = 50.0
    bspline_spacing_mm: float = 40.0

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
        if self.with_phase and not self.with_megre:
            raise ValueError("with_phase needs with_megre")
        if self.participants and len(self.participants) != self.n_subjects:
            raise ValueError("participants must have n_subjects labels")
        self._check_realistic()

    def _check_realistic(self):
        t1 = tuple(float(v) for v in np.broadcast_to(np.asarray(self.t1w_voxel_size, float),
                                                     (3,)))
        object.__setattr__(self, "t1w_voxel_size", t1)
        if self.realism not in ("basic", "realistic"):
            raise ValueError("realism must be 'basic' or 'realistic'")
        if min(t1) <= 0:
            raise ValueError(f"T1w voxel size must be positive, got {t1}")
        if not self.image_sets or set(self.image_sets) - set(IMAGE_SETS):
            raise ValueError(f"image_sets: a non-empty selection of {tuple(IMAGE_SETS)}")
        if self.chi_recon not in ("tv", "l2", "mixed"):
            raise ValueError("chi_recon must be 'tv', 'l2' or 'mixed'")
        if self.chi_outside not in ("zero", "nan"):
            raise ValueError("chi_outside must be 'zero' or 'nan'")
        if min(self.max_motion_deg, self.max_motion_mm, self.chi_mask_erosion_mm) < 0:
            raise ValueError("motion bounds and mask erosion must be >= 0")
        if self.realism == "realistic" and self.bspline_spacing_mm < 2.5 * self.max_displacement_mm:
            raise ValueError("bspline_spacing_mm must be >= 2.5 x max_displacement_mm "
                             "(a cubic B-spline field is then one-to-one)")

    def description(self) -> dict:
        """The settings recorded in ``dataset_description.json`` (JSON types).

        A basic phantom leaves out :data:`REALISTIC_FIELDS`, so its description is that of the
        phantom before the realistic mode existed.
        """
        from dataclasses import asdict

        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.realism == "basic":
            out = {k: v for k, v in out.items() if k not in REALISTIC_FIELDS}
        if not self.with_phase:
            del out["with_phase"]
        return out

    @property
    def subject_labels(self) -> tuple[str, ...]:
        """Subject labels: ``participants`` if given, else 01, 02, ..."""
        return self.participants or tuple(f"{i + 1:02d}" for i in range(self.n_subjects))

