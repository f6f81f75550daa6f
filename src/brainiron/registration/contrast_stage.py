"""The nuclei-focused local stage on the subject's own iron-contrast map (χ or R2*).

A T1w or a GRE magnitude barely shows the iron-rich nuclei (SN, RN, STN, GP, DN); the
subject's χ map shows them, and so does its R2* map (fitted from the magnitude echoes), in the
same sense as a template of that contrast built from the normative iron
(:func:`brainiron.registration.chi_template`, :func:`brainiron.registration.r2star_template`).
After the T1w or magnitude registration (which carries the global alignment), a local SyN
with cross-correlation of that template onto the map, on the maps' grid cropped to the
nuclei's box, refines the nuclei; SEPIA's hybrid T1w − k·χ image serves the same purpose.
A T1w subject refined on χ skips the T1w's own local stage (same box, weaker contrast;
docs/registration.md has the measurement): :func:`global_stage_settings`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..settings import RegistrationSettings
from .images import to_ants
from .pipeline import chi_local_settings, local_stage, registration_input
from .templates import template_image
from .transforms import Registration, compose_forward

__all__ = ["LOCAL_TEMPLATES", "chi_local_stage", "contrast_local_stage",
           "global_stage_settings", "refines_on_contrast"]

#: The template of each contrast map a registration can be refined on.
LOCAL_TEMPLATES = {"Chimap": "chi", "R2starmap": "r2star"}

#: Percentile (of the foreground) above which R2* is clipped: fit outliers (vessels, air
#: boundaries, noise) would otherwise dominate the cross-correlation.
_R2STAR_CLIP_PERCENTILE = 99.5


def refines_on_contrast(kind: str, contrast_kind: str, settings: RegistrationSettings) -> bool:
    """Whether a ``kind`` registration is refined on the subject's ``contrast_kind`` map.

    Parameters
    ----------
    kind : str
        The registration image's contrast (``T1w``, ``MEGRE``, ``Chimap``, ``R2starmap``).
    contrast_kind : str
        The contrast map's (``Chimap`` or ``R2starmap``).
    settings : RegistrationSettings
        ``chi_local_stage`` (T1w and magnitude subjects with χ), ``r2star_local_stage``
        (magnitude subjects without χ, on their fitted R2*).

    Returns
    -------
    bool
    """
    if kind not in ("T1w", "MEGRE"):
        return False  # a χ map's own registration already has its χ local stage
    if contrast_kind == "Chimap":
        return bool(settings.chi_local_stage)
    return contrast_kind == "R2starmap" and kind == "MEGRE" and bool(settings.r2star_local_stage)


def global_stage_settings(kind: str, contrast_kind: str,
                          settings: RegistrationSettings) -> RegistrationSettings:
    """The settings :func:`brainiron.registration.register` runs a ``kind`` registration with.

    A T1w registration that is refined on the subject's contrast map
    (:func:`refines_on_contrast`) skips its own local stage: the contrast map's local stage
    works on the same nuclei box with a stronger contrast (docs/registration.md measures
    better SN/RN/STN on the realistic phantom and ~25 % less time at 1 mm). Its QC then
    records ``local_refinement: false``. Every other registration keeps ``settings`` as they
    are (a magnitude registration has no local stage of its own; a χ or R2* map's own local
    stage is its contrast stage).

    Parameters
    ----------
    kind, contrast_kind, settings
        As :func:`refines_on_contrast` (the subject's registration settings).

    Returns
    -------
    RegistrationSettings
        ``settings`` with ``local_refinement=False`` for a T1w refined on its contrast map,
        else ``settings`` itself.
    """
    if kind == "T1w" and refines_on_contrast(kind, contrast_kind, settings):
        return replace(settings, local_refinement=False)
    return settings


def _local_image(values: np.ndarray, contrast_kind: str) -> np.ndarray:
    if contrast_kind == "Chimap":
        image, _ = registration_input(values, "Chimap", "chi")
        return image
    image, mask = registration_input(values, contrast_kind, "r2star")
    inside = image[mask] if mask is not None and mask.any() else image[image > 0]
    top = float(np.percentile(inside, _R2STAR_CLIP_PERCENTILE)) if inside.size else 0.0
    return np.clip(image, 0.0, top).astype(np.float32)


def contrast_local_stage(reg: Registration, values: np.ndarray, contrast_kind: str, shape,
                         affine: np.ndarray, scratch: str | Path,
                         settings: RegistrationSettings | None = None) -> Registration:
    """Refine a T1w or magnitude registration on the nuclei with the subject's χ or R2* map.

    A local SyN (cross-correlation, ``chi_local_iterations`` / ``chi_local_margin_mm``,
    :func:`brainiron.registration.local_stage`) of the contrast's template onto the map, on
    the maps' grid cropped to the nuclei's box, initialised by the whole chain so far
    composed on that grid.

    Parameters
    ----------
    reg : Registration
        The registration so far (its chain may include a coregistration).
    values : (X, Y, Z) ndarray
        The χ map (ppm) or R2* map (1/s) on the maps' grid; NaN and zeros outside its mask
        are allowed.
    contrast_kind : {"Chimap", "R2starmap"}
    shape : tuple of int
        The maps' grid.
    affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    scratch : path
        Folder for ANTs' files (a ``<template>_local`` folder is made in it).
    settings : RegistrationSettings, optional

    Returns
    -------
    Registration
        The refined chain (no composed field: :func:`brainiron.registration.maps_grid_warp`
        composes it on the maps' grid); ``qc`` gains ``<template>_local_stage`` (box and
        iterations, or why it was skipped) and ``<template>_local_seconds`` (``chi_…`` or
        ``r2star_…``).
    """
    settings = settings or reg.settings
    template = LOCAL_TEMPLATES[contrast_kind]
    started = time.perf_counter()
    folder = Path(scratch) / f"{template}_local"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        image = _local_image(values, contrast_kind)
    except ValueError as exc:
        return replace(reg, qc={**reg.qc, f"{template}_local_stage": f"skipped: {exc}"})
    start = compose_forward(reg, tuple(shape), affine, folder, name="start_")
    forward, inverse, info = local_stage(to_ants(image, affine), template_image(template),
                                         [start], list(reg.inverse), folder,
                                         chi_local_settings(settings))
    qc = {**reg.qc, f"{template}_local_stage": info,
          f"{template}_local_seconds": round(time.perf_counter() - started, 2)}
    return replace(reg, forward=forward, inverse=inverse, forward_field=None, warp=None,
                   shape=None, affine=None, qc=qc)


def chi_local_stage(reg: Registration, chi: np.ndarray, shape, affine: np.ndarray,
                    scratch: str | Path, settings: RegistrationSettings | None = None
                    ) -> Registration:
    """:func:`contrast_local_stage` on a χ map (ppm)."""
    return contrast_local_stage(reg, chi, "Chimap", shape, affine, scratch, settings)
