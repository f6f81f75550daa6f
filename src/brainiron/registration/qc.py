"""Quality control of a registration, one function for every contrast and template.

:func:`registration_qc` measures, on the subject's grid,

* ``ncc`` — normalised cross-correlation of the subject image with the warped template
  (1 = identical up to scale), inside the warped template brain, or inside the subject's own
  brain mask when that is known (a χ map against the χ template);
* ``brain_coverage`` — fraction of the warped template brain (within the image's field of
  view) that lies in the subject's foreground (contrast-independent; ~1 for any sane
  registration);
* ``log_jacobian_sd`` — SD of the log Jacobian determinant of the template-to-subject warp
  inside the brain: ~0.09 for the phantom's deformations, 0.33-0.39 when SyN forces the
  template onto a mis-oriented brain (docs/registration.md);

and flags the registration when one of them is outside the limits of :data:`QC_LIMITS`
(per contrast: the NCC is only meaningful when the contrasts match, i.e. for a T1w).

:func:`label_contrast_qc` checks the result on the maps themselves: the labelled iron-rich
nuclei must be brighter on the χ (or R2*) map than the labelled thalamus
(:data:`LABEL_CONTRAST_LIMITS`). On the QC corpus (``benchmarks/bench_qc_corpus.py``,
docs/registration.md) it is the measure that catches a magnitude image reversed, transposed
or from another head, which the template-registration measures pass.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import atlas
from ..masks import foreground_mask, template_brain_mask
from ..settings import RegistrationSettings
from .images import to_ants
from .templates import TEMPLATES, template_data
from .transforms import Registration, forward_warp, warp_image

if TYPE_CHECKING:  # pragma: no cover
    from .native import NativeAtlas

__all__ = ["IRON_CONTRAST_REGIONS", "LABEL_CONTRAST_LIMITS", "QC_LIMITS", "RECORDED_SETTINGS",
           "iron_contrast", "label_contrast_qc", "qc_failure", "qc_flag", "qc_limits",
           "qc_record",
           "registration_qc", "settings_dict"]

#: QC limits per registration contrast (docs/registration.md): smallest NCC with the warped
#: template (``nan``: not checked), smallest brain coverage, largest SD of log(Jacobian)
#: (``nan``: not checked). ``default`` applies to any contrast without a row of its own.
#: ``Chimap`` (against the χ template; the QC corpus, docs/registration.md): the NCC with
#: the χ template separates (good 0.62-0.72, reversed / swapped axes 0.39-0.42), the
#: log-Jacobian SD does not on real χ (0.50-0.54 good and reversed alike, issue 14) and the
#: coverage of an eroded QSM mask is lower than a T1w's (0.84 on a good real map).
QC_LIMITS: dict[str, dict[str, float]] = {
    "T1w": {"min_ncc": 0.7, "min_brain_coverage": 0.85, "max_log_jacobian_sd": 0.3},
    "Chimap": {"min_ncc": 0.5, "min_brain_coverage": 0.75, "max_log_jacobian_sd": math.nan},
    "default": {"min_ncc": math.nan, "min_brain_coverage": 0.85, "max_log_jacobian_sd": 0.3},
}

#: Regions of :func:`iron_contrast`: the iron-rich nuclei (χ and R2* highest in any
#: reconstruction) and the reference region (iron-poor grey matter next to them), by the
#: region names of :func:`brainiron.atlas.region_table` (both hemispheres).
IRON_CONTRAST_REGIONS: dict[str, tuple[str, ...]] = {
    "nuclei": ("SNc_PBP_VTA", "SNr", "RN", "GPe", "GPi", "Pu"),
    "reference": ("Thal",),
}

#: Smallest iron contrast of the labels (:func:`iron_contrast`, unit-free) per contrast map
#: (``Chimap``: χ, ``R2starmap``: R2*; a T2* map is read as R2*), chosen on the QC corpus
#: (docs/registration.md, "QC on a corpus of good and broken registrations"): about midway
#: between the lowest good case (χ 0.66, R2* 0.32) and the highest failed one (0.44, 0.14).
LABEL_CONTRAST_LIMITS: dict[str, dict[str, float]] = {
    "Chimap": {"min_iron_contrast": 0.55},
    "R2starmap": {"min_iron_contrast": 0.2},
}

#: The settings written to the QC record (those that change the ANTs calls), in this order.
RECORDED_SETTINGS = (
    "transform", "aff_metric", "syn_metric", "syn_sampling", "reg_iterations", "resolution_mm",
    "local_refinement", "local_iterations", "local_iterations_coarse", "local_margin_mm",
    "chi_local_iterations", "chi_local_margin_mm", "random_seed", "multicontrast_syn_metric",
    "multicontrast_syn_sampling", "chi_local_stage", "coregistration_transform",
    "r2star_local_stage", "chi_local_iterations_fine",
)


def qc_limits(contrast: str) -> dict[str, float]:
    """The QC limits of a registration contrast (:data:`QC_LIMITS`)."""
    return QC_LIMITS.get(contrast, QC_LIMITS["default"])


def _template_brain(image: np.ndarray, affine: np.ndarray, template: str, warped: np.ndarray,
                    transforms) -> np.ndarray:
    """The warped template brain on the subject's grid."""
    if template == "chi":  # χ is not brighter in the brain: warp the template's brain mask
        mask, mask_affine = template_brain_mask()
        return warp_image(image.shape, affine, mask.astype(np.float32), mask_affine,
                          transforms, "linear") > 0.5
    tpl = atlas.load_reference("template")
    return warped > 0.1 * float(np.percentile(tpl.data[tpl.data > 0], 50))


def registration_qc(image: np.ndarray, affine: np.ndarray, reg: Registration,
                    contrast: str = "T1w", *, brain_mask: np.ndarray | None = None) -> dict:
    """QC of a registration: NCC with the warped template, brain coverage, and a flag.

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        The registration image (as registered).
    affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    reg : Registration
        The registration (its ``template`` is the one compared with).
    contrast : str
        The image's contrast (``T1w``, ``MEGRE``, ``Chimap``, ``R2starmap``): selects the
        limits of :data:`QC_LIMITS`.
    brain_mask : (X, Y, Z) bool ndarray, optional
        The subject's brain, when known (a χ map's support): the NCC is computed inside it
        and it is the foreground of the coverage; else the NCC is computed inside the warped
        template brain and the foreground is :func:`brainiron.masks.foreground_mask`.

    Returns
    -------
    dict
        ``brain_voxels``, ``ncc``, ``brain_coverage``, ``log_jacobian_sd`` (see the module's
        docstring) and ``flag`` — empty when all pass, else the reasons.
    """
    import ants

    tpl_data, tpl_affine = template_data(reg.template)
    transforms = forward_warp(reg)
    warped = warp_image(image.shape, affine, np.asarray(tpl_data), tpl_affine, transforms,
                        "linear")
    brain = _template_brain(image, affine, reg.template, warped, transforms)
    out: dict = {"brain_voxels": int(brain.sum())}
    if brain.sum() < 10:
        return {**out, "ncc": float("nan"), "brain_coverage": 0.0,
                "flag": "the warped template brain falls outside the image"}
    inside = brain if brain_mask is None else brain_mask
    a = np.asarray(image, dtype=np.float64)[inside]
    b = warped[inside].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    out["ncc"] = round(float((a @ b) / denom), 4) if denom > 0 else float("nan")
    fg = foreground_mask(image) if brain_mask is None else brain_mask
    out["brain_coverage"] = round(float((brain & fg).sum() / brain.sum()), 4) \
        if fg is not None else 0.0
    if reg.forward_field:
        log_jac = ants.create_jacobian_determinant_image(
            to_ants(np.zeros(image.shape, np.float32), affine), reg.forward_field,
            do_log=True).numpy()[brain]
        out["log_jacobian_sd"] = round(float(np.std(log_jac[np.isfinite(log_jac)])), 4)
    out["flag"] = qc_flag(out, contrast)
    return out


def qc_flag(qc: dict, contrast: str) -> str:
    """The flag of a registration's QC measures under the limits of its contrast.

    Parameters
    ----------
    qc : dict
        ``ncc``, ``brain_coverage`` and (optional) ``log_jacobian_sd``, as
        :func:`registration_qc` measures them.
    contrast : str
        Selects the limits (:func:`qc_limits`).

    Returns
    -------
    str
        Empty when all pass, else the reasons joined by ``"; "``.
    """
    return "; ".join(_reasons(qc, qc_limits(contrast)))


def _reasons(out: dict, limits: dict[str, float]) -> list[str]:
    reasons = []
    min_ncc = limits["min_ncc"]
    if not math.isnan(min_ncc) and not out["ncc"] >= min_ncc:
        reasons.append(f"NCC {out['ncc']:.2f} < {min_ncc}")
    if out["brain_coverage"] < limits["min_brain_coverage"]:
        reasons.append(f"brain coverage {out['brain_coverage']:.2f} < "
                       f"{limits['min_brain_coverage']}")
    if (out.get("log_jacobian_sd") or 0.0) > limits["max_log_jacobian_sd"]:
        reasons.append(f"log-Jacobian SD {out['log_jacobian_sd']:.2f} > "
                       f"{limits['max_log_jacobian_sd']}")
    return reasons


def _region_indices(regions) -> list[int]:
    table = atlas.region_table()
    atomic = table[(table["kind"] == "atomic") & table["region"].isin(list(regions))]
    return [int(i) for i in atomic["index"]]


def iron_contrast(labels: np.ndarray, values: np.ndarray) -> float:
    """How much brighter the labelled iron-rich nuclei are than the labelled thalamus.

    ``(median over the nuclei − median over the reference) / (95th − 5th percentile of the
    map over its finite nonzero support)``, regions of :data:`IRON_CONTRAST_REGIONS`.

    Parameters
    ----------
    labels : (X, Y, Z) integer ndarray
        Atlas labels on the map's grid.
    values : (X, Y, Z) ndarray
        The χ (ppm) or R2* (1/s) map.

    Returns
    -------
    float
        Unit-free; 0.66–1.35 (χ) and 0.32–0.55 (R2*) for good registrations on the QC
        corpus, ≤ 0.44 (χ) / 0.14 (R2*) when the labels miss the nuclei; NaN with fewer than
        5 voxels in either set.
    """
    v = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(v) & (v != 0)
    nuclei = np.isin(labels, _region_indices(IRON_CONTRAST_REGIONS["nuclei"])) & valid
    reference = np.isin(labels, _region_indices(IRON_CONTRAST_REGIONS["reference"])) & valid
    if nuclei.sum() < 5 or reference.sum() < 5:
        return math.nan
    lo, hi = np.percentile(v[valid], [5, 95])
    return float((np.median(v[nuclei]) - np.median(v[reference])) / max(hi - lo, 1e-12))


def label_contrast_qc(labels: np.ndarray, values: np.ndarray, contrast_kind: str) -> dict:
    """QC of the labels on the maps: the iron-rich nuclei must show on the contrast map.

    Parameters
    ----------
    labels : (X, Y, Z) integer ndarray
        The native atlas labels (:attr:`NativeAtlas.labels`).
    values : (X, Y, Z) ndarray
        The contrast map on the same grid: χ (ppm) or R2* (1/s).
    contrast_kind : {"Chimap", "R2starmap"}
        Selects the limit of :data:`LABEL_CONTRAST_LIMITS`.

    Returns
    -------
    dict
        ``iron_contrast`` (:func:`iron_contrast`, rounded to 4 decimals), ``contrast_map``
        and ``flag`` (empty when it passes, else the reason).
    """
    value = iron_contrast(labels, values)
    limit = LABEL_CONTRAST_LIMITS[contrast_kind]["min_iron_contrast"]
    flag = "" if value >= limit else (
        f"iron contrast of the labels on the {contrast_kind} {value:.2f} < {limit} (the "
        "iron-rich nuclei are not where the labels are)")
    return {"iron_contrast": round(value, 4), "contrast_map": contrast_kind, "flag": flag}


def qc_failure(reg: Registration, settings: RegistrationSettings) -> str | None:
    """Why the subject is left out after a failed QC, or None (passed, or kept flagged).

    Parameters
    ----------
    reg : Registration
    settings : RegistrationSettings
        ``on_qc_failure``: ``exclude`` leaves the subject out, ``flag`` keeps it.

    Returns
    -------
    str or None
    """
    if not reg.qc.get("flag") or settings.on_qc_failure != "exclude":
        return None
    return (f"registration to {atlas.TEMPLATE_NAME} failed QC ({reg.qc['flag']}); the "
            "subject is left out (set registration.on_qc_failure: flag to keep it, flagged)")


def settings_dict(settings: RegistrationSettings) -> dict:
    """The settings of :data:`RECORDED_SETTINGS` as plain JSON values (tuples → lists)."""
    out = {}
    for name in RECORDED_SETTINGS:
        value = getattr(settings, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def qc_record(reg: Registration, native: NativeAtlas, *, kind: str, image_path: str,
              threads: int, timing: dict | None = None) -> dict:
    """The registration's QC record (``desc-registration_qc.json``).

    Parameters
    ----------
    reg : Registration
    native : NativeAtlas
        The labels on the maps' grid (:func:`brainiron.registration.native_atlas`).
    kind : str
        The registration image's contrast (``T1w``, ``MEGRE``, ``Chimap``, ``R2starmap``).
    image_path : str
        The registration image.
    threads : int
        Threads of the run.
    timing : dict, optional
        Stage times (s); default ``native.timing``.

    Returns
    -------
    dict
        Image, template, settings, the registration's QC (:func:`registration_qc`), the
        dentate's segmentation, voxels per label and the stage times (s).
    """
    return {
        "registration_image": kind,
        "registration_image_path": str(image_path),
        "template": atlas.TEMPLATE_NAME,
        "template_contrast": TEMPLATES[reg.template],
        "settings": settings_dict(reg.settings),
        "threads": threads,
        **reg.qc,
        "dentate": native.dentate,
        "label_voxels": dict(native.label_voxels),
        "timing_seconds": dict(native.timing if timing is None else timing),
    }
