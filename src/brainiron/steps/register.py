"""Rule ``register``: register to the template; write transforms, native labels,
probabilities, brain mask and QC.

The atlas nuclei come through the registration; the dentate is then segmented from the
contrast map inside the warped search region (:mod:`brainiron.dentate`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from .. import atlas
from ..bids import read_contrast
from ..errors import InputError
from ..io import load_nifti, read_json, save_nifti, write_json, write_tsv
from ..settings import RegistrationSettings


def _uint8_probability_header():
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_slope_inter(1.0 / 255.0, 0.0)
    return header


def main(smk) -> None:
    # ANTs' threads: the rule's, unless the environment says (set before ANTs loads).
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(smk.threads))
    from .. import registration as reg
    from ..dentate import search_labels, segment_dentate

    outputs = smk.output
    kind = smk.params.registration_kind
    image_path = smk.input.image
    validated = read_json(smk.input.validated)
    shape, affine = tuple(validated["shape"]), np.asarray(validated["affine"], dtype=float)
    settings = RegistrationSettings.from_config(smk.params.settings)
    image, img = load_nifti(image_path)
    image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    image_affine = img.affine
    mask = None if kind == "T1w" else reg.foreground_mask(image)
    scratch = reg.scratch_dir(Path(outputs.qc).parent)
    chi_only = kind == "Chimap" and settings.chi_template
    try:
        if chi_only:  # no T1w, no magnitude: the χ map against the χ-contrast template
            from ..chitemplate import register_chi

            try:
                result = register_chi(image, image_affine, scratch, settings)
            except ValueError as exc:  # e.g. an empty χ map: the input's fault
                raise InputError(image_path, str(exc)) from None
        else:
            result = reg.register_to_template(image, image_affine, scratch, settings,
                                              mask=mask, contrast=kind)
        if result.qc.get("flag") and settings.on_qc_failure == "exclude":
            raise InputError(image_path, (
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
        values, contrast_kind = read_contrast(smk.input.contrast, smk.params.contrast_kind,
                                              validated["unit_factors"])
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
        reg.save_transforms(result, shape, affine, outputs.xfm_forward,
                            outputs.xfm_inverse, scratch, forward_field=field_path)
        timing["save_transforms"] = round(time.perf_counter() - t0, 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    save_nifti(labels, outputs.dseg, affine, dtype=np.int16, intent="label")
    lookup = atomic[["index", "region", "hemisphere"]].copy()
    lookup["name"] = lookup["region"] + "_" + lookup["hemisphere"]
    write_tsv(lookup[["index", "name"]], outputs.dseg_tsv)
    box_affine = affine.copy()
    box_affine[:3, 3] = (affine @ np.r_[[s.start for s in box], 1.0])[:3]
    header = _uint8_probability_header()
    save_nifti(probs, outputs.probseg, box_affine, dtype=np.uint8, header=header)
    write_json({
        "Description": "Partial-volume probability of each atlas label on the subject's grid "
                       "(one volume per label, in LabelIndices order); cropped to a box "
                       "around the nuclei: the affine places it in the subject grid.",
        "LabelIndices": indices,
        "LabelNames": list(lookup["name"]),
        "CropStartVoxel": [s.start for s in box],
        "Units": "probability (0-1)",
    }, outputs.probseg_json)
    save_nifti(brain, outputs.brain_mask, affine, dtype=np.uint8)
    qc = {
        "registration_image": kind,
        "registration_image_path": str(image_path),
        "template": atlas.TEMPLATE_NAME,
        "template_contrast": "chi (brainiron.chitemplate)" if chi_only else "T1w",
        "settings": reg.settings_dict(result.settings),
        "threads": smk.threads,
        **result.qc,
        "dentate": dentate_info,
        "label_voxels": {name: int((labels == i).sum()) for i, name in
                         zip(lookup["index"], lookup["name"], strict=True)},
        "timing_seconds": timing,
    }
    write_json(qc, outputs.qc)
