"""Typed settings of every stage: one place for each default.

``config/config.yaml`` (validated by ``workflow/schemas/config.schema.yaml``) is what a user
edits; these frozen dataclasses are what the code reads. ``Settings.from_config(config)``
turns a (merged, validated) configuration into typed values; ``Settings().to_config()`` gives
the defaults back as a plain mapping, and ``tests/test_settings.py`` asserts that it equals
``config/config.yaml``, so that no default is written twice.

Every stage takes its own part: ``RegistrationSettings`` (``registration:``),
``RefinementSettings`` (``refinement:``), ``IronSettings`` (``iron:``),
``ComparisonSettings`` (``group_comparison:``), ``RelaxometrySettings`` (``relaxometry:``),
``QSMStageSettings`` (``qsm:``; :class:`brainiron.qsm.QSMSettings` plus ``mem_mb``),
``PhantomSettings`` (``phantom:``); the top-level keys live on :class:`Settings` itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .qsm.settings import QSMSettings

__all__ = [
    "ComparisonSettings",
    "IronSettings",
    "PhantomSettings",
    "QSMSettings",
    "QSMStageSettings",
    "RefinementSettings",
    "RegistrationSettings",
    "RelaxometrySettings",
    "Settings",
]

#: Atomic nuclei whose boundaries the refinement stage may move (brainiron.refine).
DEFAULT_REFINED_REGIONS = ("SNc_PBP_VTA", "SNr", "RN", "STN")


class _FromConfig:
    """``from_config`` / ``to_config`` for a frozen dataclass of plain values.

    Lists in the configuration become tuples (hashable, frozen); mappings stay mappings;
    nested settings dataclasses are built from their own section. Keys the dataclass does
    not know are ignored here (the schema rejects them before).
    """

    @classmethod
    def from_config(cls, config: Mapping | None):
        config = dict(config or {})
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in config or config[f.name] is None and f.name in _NESTED:
                continue
            value = config[f.name]
            nested = _NESTED.get(f.name)
            if nested is not None and cls is Settings:
                value = nested.from_config(value)
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
        return cls(**values)

    def to_config(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, _FromConfig):
                value = value.to_config()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class RegistrationSettings(_FromConfig):
    """How to register to the template (``config.yaml`` → ``registration``).

    The default is the two-stage scheme measured in ``docs/registration.md``: a global
    rigid → affine → SyN stage on a grid of ``max(voxel, resolution_mm)`` with the template
    blurred *and resampled* to that grid, then a local SyN on a box around the nuclei at the
    data's own resolution.

    Attributes
    ----------
    transform : str
        ANTsPy ``type_of_transform`` of the global stage (``SyN`` = rigid → affine → SyN).
    aff_metric : str
        Metric of the linear stages. ``GC`` (global correlation) is reproducible across
        threads; ANTs' default ``mattes`` is not, even with a seed.
    syn_metric : str
        Metric of the deformable stages for same-contrast images (``CC``).
    syn_sampling : int
        CC radius (voxels) of the deformable stages.
    reg_iterations : tuple of int
        SyN iterations per level of the global stage, coarse to fine.
    resolution_mm : float
        The global stage runs on a grid no finer than this (mm); 0 = the image's own grid.
    local_refinement : bool
        Run the second, local SyN on the nuclei's box (same-contrast images only).
    local_iterations : tuple of int
        SyN iterations per level of the local stage, for data no coarser than
        ``resolution_mm``.
    local_iterations_coarse : tuple of int
        The same for data coarser than ``resolution_mm`` (3 mm phantom: worst SN Dice 0.81
        with ``(20, 5)``, 0.90 with ``(40, 20)``, at ~3 s per subject).
    local_margin_mm : float
        Margin around the nuclei's bounding box of the local stage (mm).
    random_seed : int
        Seed of ANTs' metric sampling (``ants.config._random_seed``).
    multicontrast_syn_metric, multicontrast_syn_sampling : str, int
        Metric and sampling of the deformable stage when the subject image is not T1-weighted
        (magnitude, χ map): mutual information instead of cross-correlation.
    on_qc_failure : str
        ``exclude`` (the subject is left out and listed in ``group/failed.tsv``) or ``flag``
        (rows kept, ``registration_flag`` set) when the registration fails QC.
    chi_template : bool
        χ-only subjects are registered to brainiron's χ-contrast template (else to the T1
        template with mutual information).
    chi_local_iterations, chi_local_margin_mm : tuple of int, float
        The local stage of χ-only subjects, which needs more iterations and context than a
        T1w's (3 mm phantom: SN Dice 0.87 with (20, 5) / 8 mm, 0.91 with (40, 20) / 15 mm).
    chi_local_iterations_fine : tuple of int
        The same stage's iterations for data no coarser than ``resolution_mm`` (the χ and
        R2* local stages; realistic phantom at 1×1×2 mm: (40, 10) instead of (40, 20) saves
        a third of the stage for 0.004 mean nucleus Dice).
    t1w_grid : str
        How a T1w on another grid than the maps' is aligned with them: ``coregister``
        (default; registered to the maps' reference image, :mod:`brainiron.registration.
        coregister`), ``world`` (scanner coordinates trusted: no head motion between the
        scans) or ``same`` (a T1w on another grid is an error). A T1w on the maps' own grid
        is taken as aligned in every mode.
    coregistration_transform : str
        ``Rigid`` (default) or ``Affine``: the T1w → maps coregistration.
    chi_local_stage : bool
        A T1w or magnitude subject with a χ map gets a second local stage on the nuclei: the
        χ-contrast template onto the χ map (:func:`brainiron.registration.chi_local_stage`;
        realistic phantom, 2×2×3 mm: mean nucleus Dice 0.83 → 0.94 for a coregistered T1w,
        0.82 → 0.93 for a magnitude subject; docs/registration.md). A T1w refined so skips
        its own (T1w) local stage.
    r2star_local_stage : bool
        A magnitude subject without χ gets the same local stage on its fitted R2* map with
        the R2*-contrast template (:func:`brainiron.registration.contrast_local_stage`).
    mem_mb : int
        Memory the register rule declares (MB; peak 2.65 GB measured for a 1 mm subject).
    """

    transform: str = "SyN"
    aff_metric: str = "GC"
    syn_metric: str = "CC"
    syn_sampling: int = 2
    reg_iterations: tuple[int, ...] = (40, 10, 0)
    resolution_mm: float = 2.0
    local_refinement: bool = True
    local_iterations: tuple[int, ...] = (20, 5)
    local_iterations_coarse: tuple[int, ...] = (40, 20)
    local_margin_mm: float = 8.0
    random_seed: int = 42
    multicontrast_syn_metric: str = "mattes"
    multicontrast_syn_sampling: int = 32
    on_qc_failure: str = "exclude"
    chi_template: bool = True
    chi_local_iterations: tuple[int, ...] = (40, 20)
    chi_local_margin_mm: float = 15.0
    chi_local_iterations_fine: tuple[int, ...] = (40, 10)
    t1w_grid: str = "coregister"
    coregistration_transform: str = "Rigid"
    chi_local_stage: bool = True
    r2star_local_stage: bool = True
    mem_mb: int = 4000

    def __post_init__(self):
        for key in ("reg_iterations", "local_iterations", "local_iterations_coarse",
                    "chi_local_iterations", "chi_local_iterations_fine"):
            object.__setattr__(self, key, tuple(int(i) for i in getattr(self, key)))


@dataclass(frozen=True)
class RefinementSettings(_FromConfig):
    """Contrast-aware refinement of the small nuclei (``refinement``; :mod:`brainiron.refine`).

    Attributes
    ----------
    enabled : bool
        Run the ``refine`` rule; the tables then carry atlas and refined rows.
    regions : tuple of str
        Atomic regions refined.
    margin_voxels : int
        How far (voxels) a boundary may move outwards.
    min_contrast : float
        Nucleus-surround level difference needed, in noise SDs (pure noise reached at most
        4.4 in 240 trials; the phantom's nuclei 5.5-15).
    max_volume_ratio : float
        A nucleus whose voxel count changes by more than this factor is left as registered.
    """

    enabled: bool = False
    regions: tuple[str, ...] = DEFAULT_REFINED_REGIONS
    margin_voxels: int = 1
    min_contrast: float = 5.0
    max_volume_ratio: float = 2.0


@dataclass(frozen=True)
class IronSettings(_FromConfig):
    """MRI → iron conversion (``iron``; :mod:`brainiron.iron`).

    Attributes
    ----------
    calibrations : mapping
        Map suffix → calibration name in ``data/calibrations.tsv``.
    statistic : str
        Regional statistic converted to iron: ``mean`` or ``median``.
    """

    calibrations: Mapping[str, str] = field(default_factory=lambda: {
        "Chimap": "langkammer2012_chi", "R2starmap": "gelman1999_invivo_r2star"})
    statistic: str = "mean"


@dataclass(frozen=True)
class ComparisonSettings(_FromConfig):
    """Group comparison (``group_comparison``; :mod:`brainiron.stats`).

    Attributes
    ----------
    reference_group : str
        Group of ``participants.tsv`` the others are compared with.
    covariates : tuple of str
        Used when present in ``participants.tsv`` (complete and not constant).
    statistic : str
        Regional statistic compared (``mean`` or ``median``; iron is compared too).
    """

    reference_group: str = "control"
    covariates: tuple[str, ...] = ("age", "sex")
    statistic: str = "mean"


@dataclass(frozen=True)
class RelaxometrySettings(_FromConfig):
    """R2* from MEGRE magnitude (``relaxometry``; :mod:`brainiron.relaxometry`).

    Attributes
    ----------
    method : str
        ``nlls``, ``loglinear`` or ``arlo``.
    mem_mb : int
        Memory the relaxometry rule declares (MB).
    """

    method: str = "nlls"
    mem_mb: int = 4000


@dataclass(frozen=True)
class QSMStageSettings(_FromConfig, QSMSettings):
    """χ from MEGRE phase (``qsm``; rule ``qsm``, :func:`brainiron.qsm.reconstruct`).

    The fields of :class:`brainiron.qsm.QSMSettings` (one place for their defaults) plus the
    rule's memory; ``workers`` is replaced by the rule's threads in the workflow.

    Attributes
    ----------
    mem_mb : int
        Memory the qsm rule declares (MB).
    """

    mem_mb: int = 4000


@dataclass(frozen=True)
class PhantomSettings(_FromConfig):
    """The built-in phantom of the default run (``phantom``; :mod:`brainiron.phantom`).

    Attributes
    ----------
    subjects : int
        8 control + 8 rls (15 % lower SN iron) by default: enough for the group comparison
        to find the built-in SN difference with age and sex as covariates.
    seed : int
    voxel_size : float or tuple of 3 float
        mm.
    r2starmap, t1w, megre, chimap : bool
        Which images the subjects get (no R2starmap: R2* is fitted; no T1w: registration on
        the magnitude, or on χ when megre is false too; no Chimap with phase: χ is
        reconstructed from the phase).
    phase : bool
        The MEGRE echoes get ``part-phase`` twins (forward model of the phantom's χ with a
        background field; :mod:`brainiron.phantom`).
    """

    subjects: int = 16
    seed: int = 0
    voxel_size: float | tuple[float, float, float] = 2.5
    r2starmap: bool = True
    t1w: bool = True
    megre: bool = True
    chimap: bool = True
    phase: bool = False

    def phantom_config(self):
        """The :class:`brainiron.phantom.PhantomConfig` these settings describe."""
        from .phantom import PhantomConfig

        vs = self.voxel_size
        return PhantomConfig(n_subjects=int(self.subjects), seed=int(self.seed),
                             voxel_size=tuple(vs) if isinstance(vs, tuple | list)
                             else (float(vs),) * 3,
                             with_r2starmap=bool(self.r2starmap), with_t1w=bool(self.t1w),
                             with_megre=bool(self.megre), with_chimap=bool(self.chimap),
                             with_phase=bool(self.phase))


@dataclass(frozen=True)
class Settings(_FromConfig):
    """The whole configuration (``config/config.yaml``), typed.

    Attributes
    ----------
    bids_dir : str
        BIDS dataset to analyse; empty: the built-in phantom.
    output_dir : str
        Outputs go to ``<output_dir>/brainiron``; the phantom to ``<output_dir>/phantom``.
    participant_label, exclude : tuple of str
        Only these participants; subjects or sessions left out (``sub-07``, ``sub-09_ses-2``).
    select : mapping
        Entity filter when a subject has several candidate files, e.g. ``{"acq": "qsm"}``.
    maps : tuple of str
        Maps to quantify: ``Chimap`` (ppm), ``R2starmap`` (1/s; from an R2starmap, a
        T2starmap, or fitted from MEGRE magnitude echoes).
    chi_reference : str
        ``none``, ``wholebrain`` or ``csf`` (deep CSF, :mod:`brainiron.chi_reference`):
        subtracted from χ before the statistics.
    csf_reference_depth_mm : float
        With ``csf``: least distance (mm) of a reference voxel from the χ map's edge.
    field_strength : float or None
        B0 (T) used only when the sidecars do not state ``MagneticFieldStrength``; ``None``
        (the default): it must be stated there wherever it matters (R2*), an error otherwise.
    threads : int
        Threads per registration / relaxometry job; Snakemake's ``--cores`` caps the total.
    """

    bids_dir: str = ""
    output_dir: str = "results"
    participant_label: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    select: Mapping[str, str] = field(default_factory=dict)
    maps: tuple[str, ...] = ("Chimap", "R2starmap")
    chi_reference: str = "none"
    csf_reference_depth_mm: float = 10.0
    field_strength: float | None = None
    threads: int = 2
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    refinement: RefinementSettings = field(default_factory=RefinementSettings)
    iron: IronSettings = field(default_factory=IronSettings)
    group_comparison: ComparisonSettings = field(default_factory=ComparisonSettings)
    relaxometry: RelaxometrySettings = field(default_factory=RelaxometrySettings)
    qsm: QSMStageSettings = field(default_factory=QSMStageSettings)
    phantom: PhantomSettings = field(default_factory=PhantomSettings)


_NESTED = {"registration": RegistrationSettings, "refinement": RefinementSettings,
           "iron": IronSettings, "group_comparison": ComparisonSettings,
           "relaxometry": RelaxometrySettings, "qsm": QSMStageSettings,
           "phantom": PhantomSettings}
