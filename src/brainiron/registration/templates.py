"""The registration templates: the MNI152NLin2009cAsym T1 template and a χ-contrast template.

Many open QSM datasets ship only a susceptibility (χ) map: no T1w, sometimes no magnitude. A
T1-weighted template cannot drive a χ map well (their contrasts are unrelated outside the iron
rich nuclei), so brainiron builds, offline from its package data, a template *with χ
contrast* on the template's own grid (:func:`chi_template`):

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

References
----------
.. [1] Fonov V et al. (2011) Unbiased average age-appropriate atlases for pediatric studies.
   NeuroImage 54:313-327. (MNI152NLin2009cAsym)
.. [2] Hallgren B, Sourander P (1958) The effect of age on the non-haemin iron in the human
   brain. J Neurochem 3:41-51.
.. [3] Langkammer C et al. (2012) Quantitative susceptibility mapping (QSM) as a means to
   measure brain iron? A post mortem validation study. NeuroImage 62:1593-1599.
.. [4] Pauli WM, Nili AN, Tyszka JM (2018) A high-resolution probabilistic in vivo atlas of
   human subcortical brain nuclei. Sci Data 5:180063.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import atlas, norms
from ..dentate import dentate_prior
from ..iron import DEFAULT_CALIBRATIONS, value_from_iron
from ..masks import template_brain_mask
from .images import to_ants

__all__ = [
    "CHI_TEMPLATE_AGE_YEARS",
    "TEMPLATES",
    "chi_template",
    "chi_template_values",
    "r2star_template",
    "r2star_template_values",
    "template_brain_mask_image",
    "template_data",
    "template_image",
]

#: Age (years) at which the template's nuclei take their normative iron: the middle of the
#: adult range that most QSM cohorts span.
CHI_TEMPLATE_AGE_YEARS = 50.0

#: The templates a subject image is registered with, and how the QC record names them.
TEMPLATES = {"T1w": "T1w", "chi": "chi (brainiron.registration.templates)",
             "r2star": "R2* (brainiron.registration.templates)"}

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _class_iron(age_years: float) -> pd.DataFrame:
    """Every template class's expected iron (mg/kg wet tissue) at ``age_years``."""
    tissues = norms.phantom_tissues()
    norm_region = tissues["norm_region"]
    has_norm = norm_region.notna()
    iron = np.zeros(len(tissues))
    iron[has_norm.to_numpy()] = [float(norms.expected_iron(r, age_years))
                                 for r in norm_region[has_norm]]
    iron *= tissues["relative_to_norm"].to_numpy(float)
    return pd.DataFrame({"norm_region": norm_region, "iron_mg_per_kg": iron},
                        index=tissues.index)


def _calibration(name: str, kind: str):
    cal = norms.calibrations().loc[name]
    if cal["map"] != kind:
        raise ValueError(f"calibration {name} is for {cal['map']}, not {kind}")
    return cal


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
    cal = _calibration(calibration, "Chimap")
    table = _class_iron(age_years)
    offset = norms.phantom_tissues()["chi_offset_ppm"].to_numpy(float)
    table["chi_ppm"] = value_from_iron(table["iron_mg_per_kg"], cal, field_strength_T) + offset
    return table


def r2star_template_values(age_years: float = CHI_TEMPLATE_AGE_YEARS,
                           calibration: str = DEFAULT_CALIBRATIONS["R2starmap"],
                           field_strength_T: float = 3.0) -> pd.DataFrame:
    """Normative R2* of every class of the R2*-contrast template.

    Parameters
    ----------
    age_years : float
        Age (years) of the normative iron.
    calibration : str
        Name of an R2* calibration in ``calibrations.tsv`` (default: the in-vivo line).
    field_strength_T : float
        B0 (T); the calibration scales with it where ``calibrations.tsv`` says so.

    Returns
    -------
    DataFrame
        As :func:`chi_template_values`, with ``r2star_per_s`` (1/s) instead of ``chi_ppm``:
        the iron's R2* plus the class's ``r2star_offset_per_s`` (myelin in WM, the longer
        T2* of cortex and CSF), never below 0.
    """
    cal = _calibration(calibration, "R2starmap")
    table = _class_iron(age_years)
    offset = norms.phantom_tissues()["r2star_offset_per_s"].to_numpy(float)
    table["r2star_per_s"] = np.maximum(
        value_from_iron(table["iron_mg_per_kg"], cal, field_strength_T) + offset, 0.0)
    return table


def _paint(values: pd.Series, voxel_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """One value per class painted on the template grid (0 outside the brain), blurred to a
    ``voxel_mm`` acquisition's point-spread function; read-only."""
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
    # The dentate has no atlas label but is one of the brightest structures of a χ (and
    # R2*) map: without it, SyN pulls the cerebellum towards the subject's unmatched dentate.
    if "DN" in values.index:
        data[np.asarray(dentate_prior().data) > 0] = values.loc["DN"]
    if voxel_mm is not None and voxel_mm > 1.0:
        tpl_voxel = np.sqrt((labels.affine[:3, :3] ** 2).sum(0))
        sigma = np.sqrt(voxel_mm ** 2 - 1.0) * _FWHM_TO_SIGMA / tpl_voxel
        data = ndimage.gaussian_filter(data, sigma).astype(np.float32)
    data.setflags(write=False)
    return data, labels.affine.copy()


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
        ≤ 1 mm) returns the unblurred template; :func:`brainiron.registration.register`
        blurs (and resamples) it itself.
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
    return _paint(chi_template_values(age_years, calibration)["chi_ppm"], voxel_mm)


@functools.lru_cache(maxsize=8)
def r2star_template(voxel_mm: float | None = None, age_years: float = CHI_TEMPLATE_AGE_YEARS,
                    calibration: str = DEFAULT_CALIBRATIONS["R2starmap"],
                    field_strength_T: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """The R2*-contrast template on the MNI152NLin2009cAsym 1 mm grid (cached, read-only).

    Built like :func:`chi_template` from :func:`r2star_template_values`; it drives the
    nuclei-focused local stage of a magnitude-only subject on its fitted R2* map, where the
    iron-rich nuclei are bright as on χ (:func:`brainiron.registration.contrast_local_stage`).

    Parameters
    ----------
    voxel_mm, age_years
        As :func:`chi_template`.
    calibration : str
        R2* calibration of ``calibrations.tsv`` from iron (mg/kg) to R2* (1/s).
    field_strength_T : float
        B0 (T).

    Returns
    -------
    data : (193, 229, 193) float32 ndarray
        R2* in 1/s; 0 outside the brain.
    affine : (4, 4) ndarray
        Voxel → MNI152NLin2009cAsym world (mm, RAS).
    """
    values = r2star_template_values(age_years, calibration, field_strength_T)["r2star_per_s"]
    return _paint(values, voxel_mm)


def template_data(template: str = "T1w") -> tuple[np.ndarray, np.ndarray]:
    """A registration template's voxels and affine.

    Parameters
    ----------
    template : {"T1w", "chi", "r2star"}
        The MNI152NLin2009cAsym T1 template (brain-extracted, arbitrary units), the
        χ-contrast template (ppm, :func:`chi_template`) or the R2*-contrast template (1/s,
        :func:`r2star_template`).

    Returns
    -------
    data : (193, 229, 193) ndarray
    affine : (4, 4) ndarray
        Voxel → MNI152NLin2009cAsym world (mm, RAS).
    """
    if template == "chi":
        return chi_template()
    if template == "r2star":
        return r2star_template()
    if template != "T1w":
        raise ValueError(f"unknown template {template!r}: expected one of {sorted(TEMPLATES)}")
    tpl = atlas.load_reference("template")
    return np.asarray(tpl.data), tpl.affine


def template_image(template: str = "T1w"):
    """A registration template (:func:`template_data`) as an ANTs image."""
    data, affine = template_data(template)
    return to_ants(np.asarray(data), affine)


def template_brain_mask_image():
    """The template's brain (:func:`brainiron.masks.template_brain_mask`) as an ANTs image
    (float32, 1 inside)."""
    mask, affine = template_brain_mask()
    return to_ants(mask.astype(np.float32), affine)
