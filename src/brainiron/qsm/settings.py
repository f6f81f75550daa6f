"""Typed settings of the QSM reconstruction (one frozen dataclass, one place per default).

The ``qsm:`` section of ``config/config.yaml`` holds these fields (plus the rule's
``mem_mb``: :class:`brainiron.settings.QSMStageSettings`);
:meth:`QSMSettings.from_config` / :meth:`QSMSettings.to_config` follow the convention of
:mod:`brainiron.settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .constants import constant

__all__ = ["QSMSettings"]

_CHOICES = {
    "unwrapping": ("exact", "laplacian"),
    "echo_fit": ("intercept", "origin"),
    "background": ("vsharp", "pdf"),
    "inversion": ("tv_admm", "l2", "tkd"),
    "reference": ("whole_brain", "csf"),
}


@dataclass(frozen=True)
class QSMSettings:
    """How to reconstruct χ from multi-echo phase (defaults: the consensus-aligned chain).

    Attributes
    ----------
    unwrapping : {"exact", "laplacian"}
        Spatial unwrapping per echo: quality-guided exact (skimage) or Laplacian.
    remove_offset : bool
        Remove the echo-independent phase offset (needs ≥ 2 echoes) before unwrapping.
    offset_smoothing_mm : float
        Gaussian σ (mm) of the complex smoothing of the offset.
    echo_fit : {"intercept", "origin"}
        Fit phase = φ₀ + ω·TE (``"intercept"``: absorbs what the offset removal left) or
        phase = ω·TE (``"origin"``: lower noise when the offset removal is exact).
    residual_max_rad : float
        Phase-quality mask: largest weighted RMS echo-fit residual kept (rad).
    mask_erosion_mm : float
        Erosion of the mask before background removal (mm); V-SHARP erodes by its smallest
        radius anyway (measured on the peer phantom: 1 mm more moved GP by −5 ppb).
    background : {"vsharp", "pdf"}
        Background field removal.
    vsharp_radii_mm : tuple of float
        V-SHARP radii (mm), largest first.
    vsharp_threshold : float
        V-SHARP TSVD threshold.
    pdf_max_iter, pdf_tol : int, float
        PDF conjugate-gradient iterations and tolerance.
    inversion : {"tv_admm", "l2", "tkd"}
        Dipole inversion.
    tv_lambda, tv_mu, tv_max_iter, tv_tol : float, float, int, float
        TV-ADMM weight, data-split penalty, iterations, tolerance (rho = 100 lambda).
    l2_lambda : float
        Closed-form L2 gradient weight (mm²).
    tkd_threshold : float
        TKD truncation of |D|.
    reference : {"whole_brain", "csf"}
        χ reference region.
    b0_world : tuple of 3 float
        B0 direction in world coordinates (scanner z).
    workers : int
        FFT threads.
    """

    unwrapping: str = "exact"
    remove_offset: bool = True
    offset_smoothing_mm: float = 4.0
    echo_fit: str = "intercept"
    residual_max_rad: float = 0.5
    mask_erosion_mm: float = 0.0
    background: str = "vsharp"
    vsharp_radii_mm: tuple = (12.0, 10.0, 8.0, 6.0, 4.0, 2.0)
    vsharp_threshold: float = constant("vsharp_threshold")
    pdf_max_iter: int = 50
    pdf_tol: float = 1e-3
    inversion: str = "tv_admm"
    tv_lambda: float = 2e-4
    tv_mu: float = 1.0
    tv_max_iter: int = 40
    tv_tol: float = 1e-2
    l2_lambda: float = 1e-3
    tkd_threshold: float = constant("tkd_threshold")
    reference: str = "whole_brain"
    b0_world: tuple = (0.0, 0.0, 1.0)
    workers: int = 2

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"qsm.{name}: {getattr(self, name)!r} is not one of {allowed}")
        if not self.vsharp_radii_mm or min(self.vsharp_radii_mm) <= 0:
            raise ValueError("qsm.vsharp_radii_mm: give at least one positive radius (mm)")

    @classmethod
    def from_config(cls, config: Mapping | None) -> QSMSettings:
        """Settings from a ``qsm:`` configuration mapping (lists become tuples)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in dict(config or {}).items() if k in names}
        return cls(**values)

    def to_config(self) -> dict[str, Any]:
        """The settings as a plain mapping (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}
