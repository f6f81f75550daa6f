"""The workflow's steps: what each Snakemake rule runs (file I/O here, numerics elsewhere).

Every rule of ``workflow/rules/*.smk`` calls ``workflow/scripts/step.py``, which hands the
``snakemake`` object to :func:`run_rule`; that dispatches on the rule's name to one function
below. Each function reads its inputs, calls the library (:mod:`brainiron.registration`,
:mod:`brainiron.regions`, ...) and writes its outputs atomically. A problem with the input is
reported as one line naming the file (also written to the rule's log), with exit status 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__, atlas
from .bids import MAP_UNITS, Subject, load_map, validate_subject
from .errors import BrainironError, InputError
from .io import load_nifti, read_json, read_tsv, save_nifti, write_json, write_tsv

__all__ = ["run_rule"]

#: BIDS suffix of each quantified map as it appears in the tables (T2* maps become R2*).
TABLE_MAP = {"Chimap": "Chimap", "R2starmap": "R2starmap", "T2starmap": "R2starmap"}


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def step_phantom(out_dir: str, settings: Mapping) -> None:
    """Generate the built-in phantom dataset (the default input)."""
    from .phantom import PhantomConfig, generate_phantom

    vs = settings.get("voxel_size", 2.5)
    cfg = PhantomConfig(n_subjects=int(settings.get("subjects", 4)),
                        seed=int(settings.get("seed", 0)),
                        voxel_size=tuple(vs) if isinstance(vs, list) else (float(vs),) * 3,
                        with_r2starmap=bool(settings.get("r2starmap", True)),
                        with_t1w=bool(settings.get("t1w", True)),
                        with_megre=bool(settings.get("megre", True)))
    if Path(out_dir).exists() and not any(Path(out_dir).iterdir()):
        Path(out_dir).rmdir()  # Snakemake creates the folder of a directory() output
    generate_phantom(out_dir, cfg)


def step_validate(subject: Mapping, field_strength: float, out_json: str) -> None:
    """Read the subject's voxels and check values and units; record what was established."""
    subj = Subject.from_dict(subject)
    report = validate_subject(subj, field_strength=field_strength)
    out = report.to_dict()
    out.update({"subject": subj.to_dict(), "field_strength_T": subj.field_strength
                or field_strength, "field_strength_source": "sidecar" if subj.field_strength
                else "config"})
    write_json(out, out_json)


def _native_grid(validated: Mapping) -> tuple[tuple[int, int, int], np.ndarray]:
    return tuple(validated["shape"]), np.asarray(validated["affine"], dtype=float)


def _registration_image(subj: Subject) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The image to register, its affine, and a mask when it is not a (skull-stripped) T1w."""
    from .registration import foreground_mask

    data, img = load_nifti(subj.registration_image)
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    mask = None if subj.registration_kind == "T1w" else foreground_mask(data)
    return data, img.affine, mask


def step_relaxometry(subject: Mapping, validated_json: str, method: str, outputs: Mapping,
                     threads: int = 2) -> None:
    """R2* (1/s), T2* (s), S0 and goodness of fit from the MEGRE magnitude echoes."""
    from .registration import foreground_mask
    from .relaxometry import fit_r2star

    subj = Subject.from_dict(subject)
    validated = read_json(validated_json)
    echoes = []
    affine = None
    for path in subj.megre:
        data, img = load_nifti(path)
        echoes.append(data)
        affine = img.affine
    mask = foreground_mask(echoes[0])
    fit = fit_r2star(echoes, subj.echo_times, mask=mask, method=method, threads=threads)
    del echoes
    save_nifti(fit.r2star, outputs["r2star"], affine, dtype=np.float32)
    save_nifti(fit.t2star, outputs["t2star"], affine, dtype=np.float32)
    save_nifti(fit.s0, outputs["s0"], affine, dtype=np.float32)
    save_nifti(fit.goodness, outputs["goodness"], affine, dtype=np.float32)
    write_json({
        "Units": "1/s",
        "Description": "R2* fitted by brainiron from the MEGRE magnitude echoes (NaN outside "
                       "the magnitude's foreground and where the fit is undefined)",
        "FitMethod": fit.method,
        "EchoTime": list(fit.echo_times),
        "MagneticFieldStrength": validated["field_strength_T"],
        "Sources": [str(p) for p in subj.megre],
        "GeneratedBy": {"Name": "brainiron", "Version": __version__},
    }, outputs["r2star_json"])


def _contrast_values(subj: Subject, validated: Mapping, path: str, kind: str
                     ) -> tuple[np.ndarray, str]:
    """The map the dentate is segmented on: χ if present, else R2* (given or fitted)."""
    if kind in subj.maps and str(subj.maps[kind]) == str(path):
        values, _ = load_map(subj, kind, validated["unit_factors"].get(kind))
        return values, TABLE_MAP[kind]
    values, _ = load_nifti(path)
    return values, "R2starmap"


def step_register(subject: Mapping, validated_json: str, settings: Mapping, outputs: Mapping,
                  contrast: tuple[str, str], threads: int = 2) -> None:
    """Register to the template; write transforms, native labels, probabilities, QC.

    The atlas nuclei come through the registration; the dentate is then segmented from the
    ``contrast`` map (path, kind) inside the warped search region (:mod:`brainiron.dentate`).
    """
    from . import registration as reg
    from .dentate import search_labels, segment_dentate

    subj = Subject.from_dict(subject)
    validated = read_json(validated_json)
    shape, affine = _native_grid(validated)
    reg_settings = reg.RegistrationSettings.from_config(settings)
    image, image_affine, mask = _registration_image(subj)
    scratch = reg.scratch_dir(Path(outputs["qc"]).parent)
    chi_only = subj.registration_kind == "Chimap" and settings.get("chi_template", True)
    try:
        if chi_only:  # no T1w, no magnitude: the χ map against the χ-contrast template
            from .chitemplate import register_chi

            try:
                result = register_chi(image, image_affine, scratch, reg_settings)
            except ValueError as exc:  # e.g. an empty χ map: the input's fault
                raise InputError(subj.registration_image, str(exc)) from None
        else:
            result = reg.register_to_template(image, image_affine, scratch, reg_settings,
                                              mask=mask, contrast=subj.registration_kind)
        if result.qc.get("flag") and settings.get("on_qc_failure", "exclude") == "exclude":
            raise InputError(subj.registration_image, (
                f"registration to {atlas.TEMPLATE_NAME} failed QC ({result.qc['flag']}); the "
                "subject is left out (set registration.on_qc_failure: flag to keep it, flagged)"))
        timing = {"registration": result.qc.get("seconds")}
        t0 = time.perf_counter()
        # The chain composed once on the maps' grid and held in memory (the registration's own
        # field when the grids coincide): probabilities and the brain mask read no transform
        # file; labels use the chain (no in-memory genericLabel in ANTsPy).
        same_grid = (tuple(image.shape) == tuple(shape)
                     and np.allclose(image_affine, affine, atol=1e-5))
        if same_grid and result.forward_field:
            field_path, warp = result.forward_field, reg.forward_warp(result)
        else:
            field_path = reg.compose_forward(result, shape, affine, scratch)
            warp = reg.field_transform(field_path, result.forward)
        timing["compose_field"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        labels = reg.warp_labels(shape, affine, warp)
        search = reg.warp_labels(shape, affine, warp, search_labels())
        timing["warp_labels"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        values, contrast_kind = _contrast_values(subj, validated, *contrast)
        voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
        dentate, dentate_info = segment_dentate(values, search, voxel_mm3, contrast_kind)
        free = labels == 0
        labels[free] = dentate[free]
        timing["dentate"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        table = atlas.region_table()
        atomic = table[(table["kind"] == "atomic")]
        indices = [int(i) for i in atomic["index"]]
        probs, box = reg.warp_probabilities(shape, affine, warp, indices, labels)
        for k, index in enumerate(indices):  # contrast-segmented labels: probability 1
            if index in set(np.unique(dentate)) - {0}:
                probs[..., k] = np.where(labels[box] == index, 255, 0).astype(np.uint8)
        brain = reg.warp_brain_mask(shape, affine, warp)
        timing["warp_probabilities_and_mask"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        reg.save_transforms(result, shape, affine, outputs["xfm_forward"],
                            outputs["xfm_inverse"], scratch, forward_field=field_path)
        timing["save_transforms"] = round(time.perf_counter() - t0, 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    save_nifti(labels, outputs["dseg"], affine, dtype=np.int16, intent="label")
    lookup = atomic[["index", "region", "hemisphere"]].copy()
    lookup["name"] = lookup["region"] + "_" + lookup["hemisphere"]
    write_tsv(lookup[["index", "name"]], outputs["dseg_tsv"])
    box_affine = affine.copy()
    box_affine[:3, 3] = (affine @ np.r_[[s.start for s in box], 1.0])[:3]
    header = _uint8_probability_header()
    save_nifti(probs, outputs["probseg"], box_affine, dtype=np.uint8, header=header)
    write_json({
        "Description": "Partial-volume probability of each atlas label on the subject's grid "
                       "(one volume per label, in LabelIndices order); cropped to a box "
                       "around the nuclei: the affine places it in the subject grid.",
        "LabelIndices": indices,
        "LabelNames": list(lookup["name"]),
        "CropStartVoxel": [s.start for s in box],
        "Units": "probability (0-1)",
    }, outputs["probseg_json"])
    save_nifti(brain, outputs["brain_mask"], affine, dtype=np.uint8)
    qc = {
        "registration_image": subj.registration_kind,
        "registration_image_path": str(subj.registration_image),
        "template": atlas.TEMPLATE_NAME,
        "template_contrast": "chi (brainiron.chitemplate)" if chi_only else "T1w",
        "settings": reg.settings_dict(result.settings),
        "threads": threads,
        **result.qc,
        "dentate": dentate_info,
        "label_voxels": {name: int((labels == i).sum()) for i, name in
                         zip(lookup["index"], lookup["name"], strict=True)},
        "timing_seconds": timing,
    }
    write_json(qc, outputs["qc"])


def step_refine(subject: Mapping, validated_json: str, dseg: str, contrast: tuple[str, str],
                settings: Mapping, out_dseg: str, out_tsv: str) -> None:
    """Contrast-aware refinement of the small nuclei (:mod:`brainiron.refine`).

    Writes the refined native label image and one row per refined nucleus and hemisphere
    (status, voxels added and removed, the nucleus and surround levels in the map's units).
    """
    from .refine import refine_nuclei

    subj = Subject.from_dict(subject)
    validated = read_json(validated_json)
    labels, img = load_nifti(dseg, dtype=np.int16)
    values, kind = _contrast_values(subj, validated, *contrast)
    if values.shape != labels.shape:
        raise InputError(contrast[0], f"grid {values.shape} differs from the labels' "
                                      f"{labels.shape}")
    regions = tuple(settings.get("regions", ("SNc_PBP_VTA", "SNr", "RN", "STN")))
    try:
        refined, info = refine_nuclei(
            labels, np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), regions=regions,
            margin_voxels=int(settings.get("margin_voxels", 1)),
            min_contrast=float(settings.get("min_contrast", 5.0)),
            max_volume_ratio=float(settings.get("max_volume_ratio", 2.0)),
            voxel_size_mm=np.sqrt((img.affine[:3, :3] ** 2).sum(0)))
    except Exception as exc:  # noqa: BLE001 - optional step: keep the atlas labels, say why
        refined = labels
        info = pd.DataFrame({"region": list(regions), "hemisphere": "",
                             "label_indices": [[] for _ in regions],
                             "status": f"failed: {type(exc).__name__}: {exc}"})
    info.insert(0, "map", kind)
    info.insert(1, "units", MAP_UNITS[kind])
    info["label_indices"] = info["label_indices"].map(lambda x: "+".join(str(i) for i in x))
    save_nifti(refined.astype(np.int16), out_dseg, img.affine, dtype=np.int16, intent="label")
    write_tsv(info, out_tsv)


def _uint8_probability_header():
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_slope_inter(1.0 / 255.0, 0.0)
    return header


def _map_sources(subj: Subject, derived: Mapping[str, str]) -> dict[str, tuple[Path, str]]:
    """Table map name → (file, how to read it)."""
    sources: dict[str, tuple[Path, str]] = {}
    for kind, path in subj.maps.items():
        name = TABLE_MAP[kind]
        if name not in sources or kind == "R2starmap":
            sources[name] = (path, kind)
    for name, path in derived.items():
        sources.setdefault(name, (Path(path), "derived"))
    return sources


def step_regions(subject: Mapping, validated_json: str, dseg: str, probseg: str,
                 probseg_json: str, brain_mask: str, qc_json: str, derived: Mapping[str, str],
                 maps: list[str], chi_reference: str, out_tsv: str, out_json: str,
                 dseg_refined: str | None = None,
                 refined_regions: Sequence[str] = ("SNc_PBP_VTA", "SNr", "RN", "STN")) -> None:
    """Regional statistics of every map in every region; one long table per subject.

    With ``dseg_refined`` (contrast-refined labels, :func:`step_refine`), every region made
    of ``refined_regions`` (atomic names; composites whose members are all refined, e.g. SN)
    gets a second row with ``segmentation`` = ``refined`` (hard labels: no
    probability-weighted statistics), changed or not, so that every subject has the same
    rows; every other row has ``segmentation`` = ``atlas``.
    """
    from .regions import RegionIndex

    subj = Subject.from_dict(subject)
    validated = read_json(validated_json)
    labels, label_img = load_nifti(dseg, dtype=np.int16)
    probs, prob_img = load_nifti(probseg, ndim=4)
    prob_meta = read_json(probseg_json)
    start = prob_meta["CropStartVoxel"]
    box = tuple(slice(s, s + n) for s, n in zip(start, probs.shape[:3], strict=True))
    brain, _ = load_nifti(brain_mask, dtype=np.uint8)
    qc = read_json(qc_json)
    zooms = np.sqrt((label_img.affine[:3, :3] ** 2).sum(0))
    table = atlas.region_table()
    available = table[table["available"]]
    regions = {k: v for k, v in atlas.composite_members(table).items()
               if k in set(zip(available["region"], available["hemisphere"], strict=True))}
    index = RegionIndex(labels, regions, float(np.prod(zooms)))
    refined_index = None
    if dseg_refined:
        refined, _ = load_nifti(dseg_refined, dtype=np.int16)
        atomic = table[table["kind"] == "atomic"]
        wanted = set(atomic.loc[atomic["region"].isin(list(refined_regions)), "index"].astype(int))
        chosen = {k: v for k, v in regions.items() if v and set(v) <= wanted}
        refined_index = RegionIndex(refined, chosen, float(np.prod(zooms))) if chosen else None
    rows = []
    for name, (path, kind) in _map_sources(subj, derived).items():
        if name not in maps:
            continue
        if kind == "derived":
            values, _ = load_nifti(path)
        else:
            values, _ = load_map(subj, kind, validated["unit_factors"].get(kind))
        reference, ref_value = "none", np.nan
        if name == "Chimap" and chi_reference == "wholebrain":
            inside = (brain > 0) & np.isfinite(values) & (values != 0)
            ref_value = float(values[inside].mean())
            values = values - np.float32(ref_value)
            reference = "wholebrain"
        stats = index.statistics(values, probabilities=probs,
                                 probability_labels=prob_meta["LabelIndices"],
                                 probability_slices=box)
        stats.insert(0, "map", name)
        stats.insert(1, "units", MAP_UNITS[name])
        stats.insert(2, "source", Path(path).name)
        stats.insert(3, "reference", reference)
        stats.insert(4, "reference_value", ref_value)
        stats["segmentation"] = "atlas"
        rows.append(stats)
        if refined_index is not None:
            more = refined_index.statistics(values)
            for k, col in enumerate(["map", "units", "source", "reference",
                                     "reference_value"]):
                more.insert(k, col, stats[col].iloc[0])
            more["segmentation"] = "refined"
            rows.append(more)
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "participant_id", subj.participant_id)
    out.insert(1, "session_id", subj.session_id)
    out.insert(4, "atlas", "CIT168+aseg")
    out.insert(5, "segmentation", out.pop("segmentation"))
    out["registration_image"] = qc["registration_image"]
    out["registration_ncc"] = qc.get("ncc")
    out["registration_brain_coverage"] = qc.get("brain_coverage")
    out["registration_flag"] = qc.get("flag", "")
    out["field_strength_T"] = validated["field_strength_T"]
    write_tsv(out, out_tsv)
    write_json(column_descriptions(), out_json)


def column_descriptions() -> dict:
    """JSON sidecar of the regional tables: every column with its meaning and units."""
    files = atlas.reference_files()
    stat = "of the map's values in the region (voxels with a finite, non-zero value), in " \
           "the units of the units column"
    return {
        "participant_id": {"Description": "BIDS subject (sub-<label>)"},
        "session_id": {"Description": "BIDS session (ses-<label>), empty when none"},
        "map": {"Description": "BIDS suffix of the quantified map",
                "Levels": {"Chimap": "magnetic susceptibility", "R2starmap": "R2* relaxation "
                           "rate (from a R2starmap, a T2starmap as 1/T2*, or fitted from MEGRE)"}},
        "units": {"Description": "units of every statistic of the row",
                  "Levels": {"ppm": "parts per million", "1/s": "per second"}},
        "source": {"Description": "file the values were read from"},
        "reference": {"Description": "chi reference subtracted before the statistics",
                      "Levels": {"none": "values as given", "wholebrain": "mean chi of the "
                                 "brain (warped template brain mask) subtracted"}},
        "reference_value": {"Description": "the subtracted reference value", "Units": "ppm"},
        "atlas": {"Description": "label sources: CIT168 nuclei (Pauli et al. 2018, Sci Data "
                  "5:180063) and the aseg thalamus, in MNI152NLin2009cAsym, warped to the "
                  "subject", "Files": files[["name", "package", "sha256"]].to_dict("records")},
        "segmentation": {"Description": "how the region's voxels were chosen",
                         "Levels": {"atlas": "atlas labels warped to the subject (dentate: "
                                    "segmented from chi or R2* in the warped search region)",
                                    "refined": "atlas labels with boundaries refined from the "
                                    "chi / R2* contrast (refinement.enabled; brainiron.refine); "
                                    "hard labels, no probability-weighted statistics"}},
        "region": {"Description": "brainiron region code (see the package's regions.tsv); SN = "
                   "SNc_PBP_VTA + SNr, GP = GPe + GPi; SNc_PBP_VTA includes the parabrachial "
                   "pigmented nucleus and the ventral tegmental area"},
        "hemisphere": {"Description": "L or R"},
        "n_voxels": {"Description": "voxels labelled with the region on the subject's grid"},
        "volume_mm3": {"Description": "n_voxels times the voxel volume", "Units": "mm^3"},
        "n_valid": {"Description": "voxels of the region with a finite, non-zero value"},
        "coverage": {"Description": "n_valid / n_voxels: the fraction of the region the map "
                     "covers (partial coverage, masks)"},
        "mean": {"Description": f"mean {stat}"},
        "median": {"Description": f"median {stat}"},
        "sd": {"Description": f"standard deviation (ddof=1) {stat}"},
        "p05": {"Description": f"5th percentile {stat}"},
        "p25": {"Description": f"25th percentile {stat}"},
        "p75": {"Description": f"75th percentile {stat}"},
        "p95": {"Description": f"95th percentile {stat}"},
        "min": {"Description": f"minimum {stat}"},
        "max": {"Description": f"maximum {stat}"},
        "mean_pw": {"Description": "probability-weighted mean sum(p*x)/sum(p), p the region's "
                    "partial-volume probability warped from the template"},
        "registration_image": {"Description": "image registered to the template",
                               "Levels": {"T1w": "T1-weighted, to the T1 template",
                                          "MEGRE": "first-echo magnitude, to the T1 template "
                                          "(mutual information)",
                                          "Chimap": "susceptibility map, to brainiron's "
                                          "chi-contrast template (registration.chi_template)",
                                          "R2starmap": "R2* map, to the T1 template (mutual "
                                          "information)"}},
        "registration_ncc": {"Description": "normalised cross-correlation of the registration "
                             "image with the warped template inside the brain (QC; 1 = ideal; "
                             "meaningful for T1w)"},
        "registration_brain_coverage": {"Description": "fraction of the warped template brain "
                                        "inside the subject image's foreground (QC; ~1)"},
        "registration_flag": {"Description": "empty when the registration passed QC, else why "
                              "it is suspect (low NCC or brain coverage): check the overlays"},
        "field_strength_T": {"Description": "B0 of the acquisition", "Units": "T"},
        "calibration": {"Description": "MRI-to-iron calibration (brainiron data/"
                        "calibrations.tsv, with its citation)"},
        "calibration_mark": {"Description": "confidence in the calibration constants: V read "
                             "in the source, V2 secondary source, R from memory of the paper, "
                             "D derived by brainiron"},
        "calibration_valid": {"Description": "false where the calibration is known not to hold "
                              "(thalamus, white matter: myelin); the value is still converted"},
        "iron_mg_per_kg": {"Description": "iron from the row's regional statistic through the "
                           "calibration, R2* slopes rescaled to the field strength",
                           "Units": "mg/kg wet tissue"},
        "iron_sd_mg_per_kg": {"Description": "standard uncertainty of iron_mg_per_kg from the "
                              "region's SD/sqrt(n_valid) and the calibration's stated SEs",
                              "Units": "mg/kg wet tissue"},
        "norm_region": {"Description": "region of the normative table used for this region"},
        "iron_expected_mg_per_kg": {"Description": "expected iron at the subject's age, "
                                    "Hallgren & Sourander (1958) exponential model "
                                    "a*(1-exp(-b*age))+c", "Units": "mg/kg wet tissue"},
        "iron_z": {"Description": "(iron_mg_per_kg - iron_expected_mg_per_kg) / normative SD"},
        "norm_source": {"Description": "citation and confidence mark of the norm"},
        "age": {"Description": "from participants.tsv", "Units": "year"},
        "sex": {"Description": "from participants.tsv"},
        "group": {"Description": "from participants.tsv"},
    }


def step_compare(regions: str, settings: Mapping, out_tsv: str, out_json: str) -> None:
    """Group comparison table (statsmodels OLS with covariates, Benjamini-Hochberg)."""
    from .stats import group_comparison

    if not Path(regions).read_text().strip():  # every subject failed: nothing to compare
        write_tsv(pd.DataFrame(columns=list(comparison_descriptions())), out_tsv)
        write_json(comparison_descriptions(), out_json)
        return
    table = read_tsv(regions, dtype={"session_id": str})
    if "segmentation" in table:  # compare the atlas regions (refined ones are a sensitivity check)
        table = table[table["segmentation"].fillna("atlas") == "atlas"]
    result = group_comparison(table, reference_group=settings.get("reference_group", "control"),
                              covariates=settings.get("covariates", ["age", "sex"]),
                              statistic=settings.get("statistic", "mean"))
    write_tsv(result, out_tsv)
    write_json(comparison_descriptions(), out_json)


def comparison_descriptions() -> dict:
    """JSON sidecar of group/group_comparison.tsv."""
    return {
        "outcome": {"Description": "what is compared: the regional statistic of the map "
                    "(mean or median, in the map's units) or iron_mg_per_kg"},
        "map": {"Description": "BIDS suffix of the map"},
        "units": {"Description": "units of the means, SDs, difference and CI of the row"},
        "region": {"Description": "brainiron region code"},
        "hemisphere": {"Description": "L or R"},
        "reference_group": {"Description": "group the others are compared with"},
        "group": {"Description": "the compared group"},
        "n_reference": {"Description": "subjects of the reference group with a value"},
        "n_group": {"Description": "subjects of the compared group with a value"},
        "mean_reference": {"Description": "unadjusted mean of the reference group"},
        "sd_reference": {"Description": "SD (ddof=1) of the reference group"},
        "mean_group": {"Description": "unadjusted mean of the compared group"},
        "sd_group": {"Description": "SD (ddof=1) of the compared group"},
        "difference": {"Description": "group minus reference, adjusted for the covariates "
                       "(OLS, statsmodels)"},
        "ci_low": {"Description": "lower bound of the 95 % confidence interval of difference"},
        "ci_high": {"Description": "upper bound of the 95 % confidence interval of difference"},
        "p": {"Description": "two-sided p-value of difference (t-test of the OLS coefficient)"},
        "p_fdr": {"Description": "Benjamini-Hochberg adjusted p across the regions and "
                  "hemispheres of the same outcome, map and group"},
        "cohens_d": {"Description": "adjusted difference divided by the residual SD"},
        "covariates": {"Description": "covariates in the model (those present, complete and "
                       "not constant)"},
    }


def step_check(failed_tsv: str, out_json: str) -> None:
    """Fail (exit 1) when any subject could not be processed; else write a summary."""
    failed = read_tsv(failed_tsv, dtype=str)
    if len(failed):
        listing = "; ".join(f"{r.subject}: {r.error}" for r in failed.itertuples())
        raise BrainironError(f"{len(failed)} subject(s) failed ({failed_tsv}): {listing}")
    write_json({"failed": 0, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, out_json)


def step_report(deriv_dir: str, out_html: str, phantom_truth: str, bids_dir: str) -> None:
    """The self-contained HTML report (tables, figures, overlays, methods)."""
    from .report import build_report

    build_report(deriv_dir, out_html, phantom_truth=phantom_truth or None, bids_dir=bids_dir)


def step_group(stats: list[str], participants: str | None, failed: list[Mapping],
               ignored: list[Mapping], config: Mapping, outputs: Mapping) -> None:
    """Gather subjects into the long and wide group tables; list failures and ignored files."""
    long = pd.concat([read_tsv(p, dtype={"session_id": str}) for p in stats],
                     ignore_index=True) if stats else pd.DataFrame()
    if participants and Path(participants).exists() and not long.empty:
        people = read_tsv(participants, dtype={"participant_id": str})
        extra = [c for c in people.columns if c != "participant_id" and c not in long.columns]
        long = long.merge(people[["participant_id", *extra]], on="participant_id", how="left")
    if not long.empty:
        from .iron import add_iron, add_norms

        iron_cfg = config.get("iron") or {}
        long = add_iron(long, iron_cfg.get("calibrations"), iron_cfg.get("statistic", "mean"),
                        float(config.get("field_strength", 3.0)))
        long = add_norms(long)
    write_tsv(long, outputs["regions"])
    sidecar = column_descriptions()
    write_json(sidecar, outputs["regions_json"])
    wide = wide_table(long)
    write_tsv(wide, outputs["wide"])
    write_json(wide_descriptions(wide), outputs["wide_json"])
    write_tsv(pd.DataFrame(list(failed), columns=["subject", "stage", "error"]),
              outputs["failed"])
    write_tsv(pd.DataFrame(list(ignored), columns=["path", "reason"]), outputs["ignored"])
    write_json({
        "Name": "brainiron regional iron",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainiron", "Version": __version__,
                         "CodeURL": "https://github.com/brainiron/brainiron",
                         "Configuration": _jsonable(config)}],
        "SourceDatasets": [{"URL": Path(str(config.get("bids_dir") or "phantom")).as_posix()}],
    }, outputs["description"])


def _unit_slug(units: str) -> str:
    return {"ppm": "ppm", "1/s": "per_s", "s": "s"}.get(units, units.replace("/", "_per_"))


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per subject (× session), one column per map × region × hemisphere mean.

    Column names carry the units: ``Chimap_SN_L_mean_ppm``, ``R2starmap_Pu_R_mean_per_s``;
    contrast-refined regions add ``Chimap_SN_L_refined_mean_ppm``.
    """
    if long.empty:
        return pd.DataFrame(columns=["participant_id", "session_id"])
    df = long.copy()
    df["session_id"] = df["session_id"].fillna("")
    stem = df["map"] + "_" + df["region"] + "_" + df["hemisphere"]
    if "segmentation" in df:  # contrast-refined regions: their own columns
        stem = stem.where(df["segmentation"].fillna("atlas") == "atlas", stem + "_refined")
    parts = [(stem + "_mean_" + df["units"].map(_unit_slug), "mean")]
    if "iron_mg_per_kg" in df:
        parts += [(stem + "_iron_mg_per_kg", "iron_mg_per_kg"), (stem + "_iron_z", "iron_z")]
    frames = []
    for column, value in parts:
        piece = df.assign(column=column).pivot_table(
            index=["participant_id", "session_id"], columns="column", values=value,
            aggfunc="first", sort=False, dropna=False)
        frames.append(piece[list(dict.fromkeys(column))])
    wide = pd.concat(frames, axis=1).reset_index()
    wide.columns.name = None
    return wide


def wide_descriptions(wide: pd.DataFrame) -> dict:
    out = {"participant_id": {"Description": "BIDS subject"},
           "session_id": {"Description": "BIDS session, empty when none"}}
    for col in wide.columns[2:]:
        map_, rest = col.split("_", 1)
        if rest.endswith("_iron_mg_per_kg"):
            where = rest.removesuffix("_iron_mg_per_kg")
            out[col] = {"Description": f"iron from {map_} in {where}; see regions.tsv",
                        "Units": "mg/kg wet tissue"}
        elif rest.endswith("_iron_z"):
            where = rest.removesuffix("_iron_z")
            out[col] = {"Description": f"age-normative z-score of iron from {map_} in {where}"}
        else:
            where, unit = rest.split("_mean_")
            units = {"ppm": "ppm", "per_s": "1/s"}.get(unit, unit)
            how = ""
            if where.endswith("_refined"):
                where, how = where.removesuffix("_refined"), ", boundaries refined from contrast"
            out[col] = {"Description": f"mean {map_} in {where} (region_hemisphere{how}); see "
                        "regions.tsv", "Units": units}
    return out


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


# --------------------------------------------------------------------------------------------
# Dispatch from Snakemake's script directive
# --------------------------------------------------------------------------------------------


#: Suffix of the marker a failed per-subject rule leaves beside its log (read by
#: ``brainiron run`` and the group rule to list failures; removed when the rule succeeds).
FAILED_SUFFIX = ".failed.json"


def failure_marker(log_path: str | Path) -> Path:
    """``<log>.failed.json`` — the failure record of one rule run."""
    return Path(str(log_path) + FAILED_SUFFIX)


def read_failures(deriv_dir: str | Path) -> dict[str, dict]:
    """Failure records under ``<deriv>/logs``: subject key → {rule, error}."""
    out: dict[str, dict] = {}
    for path in sorted(Path(deriv_dir, "logs").rglob(f"*{FAILED_SUFFIX}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("subject"):
            out.setdefault(record["subject"], record)
    return out


def run_rule(smk) -> None:
    """Run the step of a Snakemake rule (``smk`` is the ``snakemake`` script object).

    A problem with the input (:class:`BrainironError`) or the file system (``OSError``: no
    space, no permission) ends in one line on stderr and in the rule's log; anything else is
    a bug and keeps its traceback in the log. Per-subject rules also leave a failure record
    (:func:`failure_marker`) so that ``brainiron run`` can list what failed and why.
    """
    started = time.perf_counter()
    rule = smk.rule
    log = smk.log[0] if len(smk.log) else None
    key = dict(smk.wildcards.items()).get("key")
    marker = failure_marker(log) if log and key else None
    try:
        _dispatch(rule, smk)
    except Exception as exc:  # noqa: BLE001 - reported, recorded, then exit 1
        import traceback

        if isinstance(exc, BrainironError):
            problem = str(exc)
        elif isinstance(exc, OSError):
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            problem = f"{where}{exc.strerror or exc}"
        else:
            _log(log, traceback.format_exc())
            problem = _cannot_write(smk.output) or \
                f"unexpected {type(exc).__name__}: {exc} (a bug: see {log})"
        message = f"brainiron: error in {rule}" + (f" for {key}" if key else "") + \
            f": {problem}"
        _log(log, message)
        if marker is not None:
            with contextlib.suppress(OSError):
                write_json({"subject": key, "rule": rule, "error": problem}, marker)
        print(message, file=sys.stderr)
        sys.exit(1)
    if marker is not None:
        marker.unlink(missing_ok=True)
        if rule == "regions":  # the subject's table exists: older records of it are stale
            # (e.g. a rule that failed before the configuration stopped asking for it)
            for stale in marker.parent.glob(f"{key}_*.log{FAILED_SUFFIX}"):
                stale.unlink(missing_ok=True)
    _log(log, f"{rule} finished in {time.perf_counter() - started:.1f} s")


def _cannot_write(outputs) -> str | None:
    """Why a 1 MB file cannot be written beside the outputs (full disk, quota), or None.

    Tools such as ANTs report a full disk as a generic failure; this probe turns it into the
    message a researcher needs.
    """
    import tempfile

    for folder in sorted({Path(str(p)).parent for p in outputs}):
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".brainiron-write-test-") as fh:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
                os.fsync(fh.fileno())
        except FileNotFoundError:
            continue
        except OSError as exc:
            import errno

            why = "the disk is full or a quota or file-size limit is reached" if exc.errno in (
                errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "check the folder's permissions"
            return f"{folder}: cannot write ({exc.strerror}): {why}"
    return None


def _log(path, message: str) -> None:
    if path:
        with contextlib.suppress(OSError):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(message.rstrip() + "\n")


def _dispatch(rule: str, smk) -> None:
    p, i, o = smk.params, smk.input, smk.output
    if rule == "phantom":
        step_phantom(o[0], p.settings)
    elif rule == "relaxometry":
        step_relaxometry(p.subject, i.validated, p.method, dict(o.items()), smk.threads)
    elif rule == "validate":
        step_validate(p.subject, p.field_strength, o[0])
    elif rule == "register":
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(smk.threads))
        step_register(p.subject, i.validated, p.settings, dict(o.items()),
                      (i.contrast, p.contrast_kind), smk.threads)
    elif rule == "regions":
        step_regions(p.subject, i.validated, i.dseg, i.probseg, i.probseg_json, i.brain_mask,
                     i.qc, dict(p.derived), list(p.maps), p.chi_reference, o.tsv, o.json,
                     dseg_refined=str(i.dseg_refined) if i.get("dseg_refined") else None,
                     refined_regions=list(p.refined_regions))
    elif rule == "refine":
        step_refine(p.subject, i.validated, i.dseg, (i.contrast, p.contrast_kind), p.settings,
                    o.dseg, o.tsv)
    elif rule == "report":
        step_report(str(Path(i.description).parent), o[0], p.phantom_truth, p.bids_dir)
    elif rule == "compare":
        step_compare(i.regions, p.settings, o.tsv, o.json)
    elif rule == "check":
        step_check(i.failed, o[0])
    elif rule == "group":
        step_group(list(i.stats), p.participants, p.failed, p.ignored, p.config,
                   dict(o.items()))
    else:
        raise KeyError(f"no brainiron step for rule {rule!r}")
