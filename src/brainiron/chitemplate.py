"""A χ-contrast template in MNI152NLin2009cAsym, and registration of χ-only subjects to it.

Many open QSM datasets ship only a susceptibility (χ) map: no T1w, sometimes no magnitude. A
T1-weighted template cannot drive a χ map well (their contrasts are unrelated outside the iron
rich nuclei), so brainiron builds, offline from its package data, a template *with χ
contrast* on the template's own grid:

* every voxel of the template's brain gets a normative χ (ppm) from its class: a brainiron
  nucleus of :func:`brainiron.atlas.template_labels` (CIT168 + aseg thalamus), the typical
  dentate of :func:`brainiron.dentate.dentate_prior` (no atlas has a dentate label), else one
  of the tissue classes of :func:`brainiron.atlas.template_tissues` (CSF, GM, WM);
* a class's χ is its expected iron at a given age (Hallgren & Sourander norms,
  ``iron_norms.tsv``, scaled by ``relative_to_norm`` of ``phantom_tissues.tsv``) through a χ
  calibration line (``calibrations.tsv``, default ``langkammer2012_chi``), plus the class's
  diamagnetic offset (myelin, ``chi_offset_ppm`` of ``phantom_tissues.tsv``). CSF has no
  iron: its χ is the calibration's intercept plus its offset (≈ 0 ppm, the usual reference).

No number lives in this module: every value comes from those tables with their citations and
confidence marks (see :mod:`brainiron.norms`).

Registration (:func:`register_chi`) then follows what worked on real 3 T χ maps (field notes):
an initial affine between *binary brain masks* (χ has little large-scale contrast for an
intensity metric to lock on to, but the brain's outline is unambiguous), then SyN with the
cross-correlation metric against the χ template (same contrast, so CC applies), then the same
local SyN on the nuclei's box as the T1w path (:mod:`brainiron.registration`).

References
----------
.. [1] Hallgren B, Sourander P (1958) The effect of age on the non-haemin iron in the human
   brain. J Neurochem 3:41-51.
.. [2] Langkammer C et al. (2012) Quantitative susceptibility mapping (QSM) as a means to
   measure brain iron? A post mortem validation study. NeuroImage 62:1593-1599.
.. [3] Pauli WM, Nili AN, Tyszka JM (2018) A high-resolution probabilistic in vivo atlas of
   human subcortical brain nuclei. Sci Data 5:180063.
.. [4] Avants BB et al. (2008) Symmetric diffeomorphic image registration with
   cross-correlation. Med Image Anal 12:26-41.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from . import atlas, norms
from .dentate import dentate_prior
from .iron import DEFAULT_CALIBRATIONS, value_from_iron

__all__ = [
    "CHI_TEMPLATE_AGE_YEARS",
    "chi_brain_mask",
    "chi_template",
    "chi_template_values",
    "register_chi",
]

#: Age (years) at which the template's nuclei take their normative iron: the middle of the
#: adult range that most QSM cohorts span.
CHI_TEMPLATE_AGE_YEARS = 50.0

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def chi_template_values(age_years: float = CHI_TEMPLATE_AGE_YEARS,
                        calibration: str = DEFAULT_CALIBRATIONS["Chimap"],
                        field_strength_T: float = 3.0) -> pd.DataFrame:
    """Normative χ of every class of the χ template.

    Parameters
    ----------
    age_years : float
        Age (years) of the normative iron.
    calibration : str
        Name of a χ calibration in ``calibrations.tsv``.
    field_strength_T : float
        B0 (T); χ calibrations do not scale with it, kept for symmetry with R2*.

    Returns
    -------
    DataFrame
        Indexed by tissue (``phantom_tissues.tsv`` rows: the atomic regions and ``CSF``,
        ``GM``, ``WM``), with ``norm_region``, ``iron_mg_per_kg`` (mg/kg wet tissue) and
        ``chi_ppm``.
    """
    cal = norms.calibrations().loc[calibration]
    if cal["map"] != "Chimap":
        raise ValueError(f"calibration {calibration} is for {cal['map']}, not Chimap")
    tissues = norms.phantom_tissues()
    norm_region = tissues["norm_region"]
    has_norm = norm_region.notna()
    iron = np.zeros(len(tissues))
    iron[has_norm.to_numpy()] = [float(norms.expected_iron(r, age_years))
                                 for r in norm_region[has_norm]]
    iron *= tissues["relative_to_norm"].to_numpy(float)
    chi = value_from_iron(iron, cal, field_strength_T) + tissues["chi_offset_ppm"].to_numpy(float)
    return pd.DataFrame({"norm_region": norm_region, "iron_mg_per_kg": iron, "chi_ppm": chi},
                        index=tissues.index)


@functools.lru_cache(maxsize=8)
def chi_template(voxel_mm: float | None = None, age_years: float = CHI_TEMPLATE_AGE_YEARS,
                 calibration: str = DEFAULT_CALIBRATIONS["Chimap"]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The χ-contrast template on the MNI152NLin2009cAsym 1 mm grid (cached, read-only).

    Parameters
    ----------
    voxel_mm : float, optional
        Resolution (mm) of the data it will be compared with: the piecewise-constant template
        is blurred with a Gaussian of FWHM² = voxel_mm² − 1 mm² (the template's own voxel is
        1 mm), i.e. to the point-spread function of a ``voxel_mm`` acquisition. ``None`` (or
        ≤ 1 mm) returns the unblurred template; :func:`register_chi` blurs (and resamples) it
        itself.
    age_years : float
        Age (years) of the normative iron of the nuclei.
    calibration : str
        χ calibration of ``calibrations.tsv`` from iron (mg/kg) to χ (ppm).

    Returns
    -------
    data : (193, 229, 193) float32 ndarray
        χ in ppm; 0 outside the brain (as in a masked χ map).
    affine : (4, 4) ndarray
        Voxel → MNI152NLin2009cAsym world (mm, RAS).
    """
    values = chi_template_values(age_years, calibration)["chi_ppm"]
    labels = atlas.template_labels()
    tissues = atlas.template_tissues()
    table = atlas.region_table()
    atomic = table[(table["kind"] == "atomic") & table["available"]]
    label_lut = np.zeros(int(atomic["index"].max()) + 1, np.float32)
    label_lut[atomic["index"].to_numpy(int)] = values.loc[atomic["region"]].to_numpy(float)
    tissue_lut = np.zeros(max(atlas.TISSUE_CLASSES) + 1, np.float32)
    for index, name in atlas.TISSUE_CLASSES.items():
        tissue_lut[index] = values.loc[name]
    lab = np.asarray(labels.data)
    data = np.where(lab > 0, label_lut[np.clip(lab, 0, None)],
                    tissue_lut[np.asarray(tissues.data)]).astype(np.float32)
    # The dentate has no atlas label but is one of the brightest structures of a χ map:
    # without it, SyN pulls the cerebellum towards the subject's unmatched dentate.
    if "DN" in values.index:
        data[np.asarray(dentate_prior().data) > 0] = values.loc["DN"]
    if voxel_mm is not None and voxel_mm > 1.0:
        tpl_voxel = np.sqrt((labels.affine[:3, :3] ** 2).sum(0))
        sigma = np.sqrt(voxel_mm ** 2 - 1.0) * _FWHM_TO_SIGMA / tpl_voxel
        data = ndimage.gaussian_filter(data, sigma).astype(np.float32)
    data.setflags(write=False)
    return data, labels.affine.copy()


def chi_brain_mask(chi: np.ndarray) -> np.ndarray:
    """Brain mask of a χ map: its nonzero finite voxels, largest component, holes filled.

    QSM pipelines set χ to 0 (or NaN) outside the brain mask they reconstructed in, so that
    mask is recovered exactly.

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        χ map (ppm).

    Returns
    -------
    (X, Y, Z) bool ndarray
        Empty when the map has no nonzero finite voxel.
    """
    chi = np.asarray(chi)
    inside = np.isfinite(chi) & (chi != 0)
    lab, n = ndimage.label(inside)
    if n == 0:
        return inside
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(lab == sizes.argmax())


def _template_image(voxel_mm: float | None = None):
    from .registration import to_ants

    data, affine = chi_template(voxel_mm)
    return to_ants(np.asarray(data), affine)


def _template_brain_mask():
    from .registration import to_ants

    tpl = atlas.load_reference("template")
    return to_ants((np.asarray(tpl.data) > 0).astype(np.float32), tpl.affine)


def _as_list(transforms) -> list[str]:
    return [transforms] if isinstance(transforms, str) else list(transforms)


def register_chi(chi: np.ndarray, affine: np.ndarray, workdir: str | Path, settings=None,
                 mask: np.ndarray | None = None):
    """Register a χ map (fixed) with the χ-contrast template (moving).

    1. Brain mask of the χ map (:func:`chi_brain_mask`), unless ``mask`` is given.
    2. Initial affine between the binary brain masks (subject vs template, both blurred and
       resampled to ``g = max(voxel, resolution_mm)``; global-correlation metric, centres
       of mass aligned first).
    3. Global stage: ``settings.transform`` (rigid → affine → SyN, CC) of the χ map against
       the χ template, both on ``g`` mm grids, initialised with step 2.
    4. Local stage: SyN on the nuclei's box at the data's resolution, as for a T1w
       (:func:`brainiron.registration._local_stage`, with the χ template), with
       ``settings.chi_local_iterations`` and ``settings.chi_local_margin_mm``.

    Parameters
    ----------
    chi : (X, Y, Z) ndarray
        χ map (ppm); 0 / NaN outside the brain.
    affine : (4, 4) ndarray
        Voxel → world (RAS, mm).
    workdir : path
        Folder for ANTs' transform files.
    settings : RegistrationSettings, optional
        As for :func:`brainiron.registration.register_to_template`; ``local_refinement``
        switches step 4.
    mask : (X, Y, Z) bool ndarray, optional
        Brain mask to use instead of the χ map's support.

    Returns
    -------
    brainiron.registration.Registration
        ``qc`` holds ``ncc`` (χ vs the warped χ template in the subject's brain mask),
        ``brain_coverage``, ``log_jacobian_sd``, ``mask_dice`` (the brain masks after the
        initial affine), the stage times (s) and ``flag``.
    """
    import ants

    from . import registration as reg

    settings = settings or reg.RegistrationSettings()
    ants.config._random_seed = int(settings.random_seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chi = np.nan_to_num(np.asarray(chi, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    brain = chi_brain_mask(chi) if mask is None else np.asarray(mask, bool)
    if brain.sum() < 1000:
        raise ValueError("the χ map has fewer than 1000 nonzero voxels: no brain to register")
    chi = np.where(brain, chi, 0.0).astype(np.float32)
    fixed = reg.to_ants(chi, affine)
    native = float(np.mean(fixed.spacing))
    grid = max(native, float(settings.resolution_mm or 0.0))

    def on_grid(img):
        return img if grid <= float(np.mean(img.spacing)) + 1e-6 else reg._resample_aa(img, grid)

    # (b) initial affine between the binary masks.
    t0 = time.perf_counter()
    fixed_mask = on_grid(reg.to_ants(brain.astype(np.float32), affine))
    moving_mask = reg._resample_aa(_template_brain_mask(), grid)
    init = ants.registration(fixed=fixed_mask, moving=moving_mask, type_of_transform="Affine",
                             aff_metric="GC", outprefix=str(workdir / "mask_"))
    init_tx = _as_list(init["fwdtransforms"])
    warped_mask = ants.apply_transforms(fixed_mask, moving_mask, init_tx).numpy() > 0.5
    fm = fixed_mask.numpy() > 0.5
    mask_dice = 2.0 * (warped_mask & fm).sum() / max(warped_mask.sum() + fm.sum(), 1)
    qc = {"mask_affine_seconds": round(time.perf_counter() - t0, 2),
          "mask_dice": round(float(mask_dice), 4), "global_grid_mm": round(grid, 3)}

    # (c) SyN with CC against the χ template, from the mask affine.
    t0 = time.perf_counter()
    template = _template_image()
    stage1 = ants.registration(
        fixed=on_grid(fixed), moving=reg._resample_aa(template, grid),
        type_of_transform=settings.transform, initial_transform=init_tx,
        aff_metric=settings.aff_metric, syn_metric=settings.syn_metric,
        syn_sampling=settings.syn_sampling, reg_iterations=tuple(settings.reg_iterations),
        write_composite_transform=True, outprefix=str(workdir / "global_"))
    forward = _as_list(stage1["fwdtransforms"])
    inverse = _as_list(stage1["invtransforms"])
    qc["global_seconds"] = round(time.perf_counter() - t0, 2)

    # (d) local SyN on the nuclei's box at the data's resolution.
    if settings.local_refinement:
        t0 = time.perf_counter()
        # χ needs the heavier local stage (docs/registration.md): SN Dice 0.87 with the T1w
        # default (20,5) / 8 mm, 0.91 with (40,20) / 15 mm at 3 mm.
        chi_iterations = tuple(settings.chi_local_iterations)
        local_settings = replace(settings, local_iterations=chi_iterations,
                                 local_iterations_coarse=chi_iterations,
                                 local_margin_mm=float(settings.chi_local_margin_mm))
        forward, inverse, local = reg._local_stage(fixed, template, forward, inverse, workdir,
                                                   local_settings)
        qc.update(local, local_seconds=round(time.perf_counter() - t0, 2))
    result = reg._composed_result(forward, inverse, settings, chi.shape, affine, workdir)
    result.qc = {**chi_registration_qc(chi, affine, brain, result), **qc,
                 "seconds": round(time.perf_counter() - started, 2)}
    return result


def chi_registration_qc(chi: np.ndarray, affine: np.ndarray, brain: np.ndarray,
                        result) -> dict:
    """QC of a χ registration (contrast-matched counterpart of ``registration_qc``).

    Returns
    -------
    dict
        ``ncc`` of the χ map with the warped χ template inside the subject's brain mask,
        ``brain_coverage`` (fraction of the warped template brain inside the subject's brain
        mask), ``log_jacobian_sd`` and ``flag`` (same limits as
        :func:`brainiron.registration.registration_qc`, with NCC not checked).
    """
    import ants

    from . import registration as reg

    tpl_chi, tpl_affine = chi_template()
    transforms = reg.forward_warp(result)
    warped = reg._apply(chi.shape, affine, np.asarray(tpl_chi), tpl_affine, transforms,
                        "linear")
    tpl = atlas.load_reference("template")
    warped_brain = reg._apply(chi.shape, affine, (np.asarray(tpl.data) > 0).astype(np.float32),
                              tpl.affine, transforms, "linear") > 0.5
    out: dict = {"brain_voxels": int(warped_brain.sum())}
    if warped_brain.sum() < 10:
        return {**out, "ncc": float("nan"), "brain_coverage": 0.0,
                "flag": "the warped template brain falls outside the image"}
    a = np.asarray(chi, np.float64)[brain]
    b = warped[brain].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    out["ncc"] = round(float((a @ b) / denom), 4) if denom > 0 else float("nan")
    out["brain_coverage"] = round(float((warped_brain & brain).sum() / warped_brain.sum()), 4)
    if result.forward_field:
        log_jac = ants.create_jacobian_determinant_image(
            reg.to_ants(np.zeros(chi.shape, np.float32), affine), result.forward_field,
            do_log=True).numpy()[warped_brain]
        out["log_jacobian_sd"] = round(float(np.std(log_jac[np.isfinite(log_jac)])), 4)
    reasons = []
    if out["brain_coverage"] < reg.QC_MIN_BRAIN_COVERAGE:
        reasons.append(f"brain coverage {out['brain_coverage']:.2f} < "
                       f"{reg.QC_MIN_BRAIN_COVERAGE}")
    if out.get("log_jacobian_sd", 0.0) > reg.QC_MAX_LOG_JACOBIAN_SD:
        reasons.append(f"log-Jacobian SD {out['log_jacobian_sd']:.2f} > "
                       f"{reg.QC_MAX_LOG_JACOBIAN_SD}")
    out["flag"] = "; ".join(reasons)
    return out
