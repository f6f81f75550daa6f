"""Rule ``register``: register to the template; write transforms, native labels,
probabilities, brain mask and QC.

The atlas nuclei come through the registration (:func:`brainiron.registration.register`);
the dentate is then segmented from the contrast map inside the warped search region
(:func:`brainiron.registration.native_atlas`), and the labels must show the iron-rich nuclei
on that map (:func:`brainiron.registration.label_contrast_qc`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from .. import layout
from ..bids import read_contrast
from ..errors import InputError
from ..io import load_nifti, read_json, save_nifti, write_json, write_tsv
from ..settings import RegistrationSettings
from ..sidecars import registration_sidecars


def main(smk) -> None:
    # ANTs' threads: the rule's, unless the environment says (set before ANTs loads).
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(smk.threads))
    from .. import registration as reg

    out = smk.output
    kind = smk.params.registration_kind
    image_path = smk.input.image
    settings = RegistrationSettings.from_config(smk.params.settings)
    validated = read_json(smk.input.validated)
    shape, affine = tuple(validated["shape"]), np.asarray(validated["affine"], dtype=float)
    image, img = load_nifti(image_path)
    values, contrast_kind = read_contrast(smk.input.contrast, smk.params.contrast_kind,
                                          validated["unit_factors"])
    refine_on_contrast = reg.refines_on_contrast(kind, contrast_kind, settings)
    # A T1w refined on its contrast map skips its own local stage (same box).
    global_settings = reg.global_stage_settings(kind, contrast_kind, settings)
    scratch = reg.scratch_dir(Path(out.qc).parent)
    try:
        try:
            result = reg.register(image, img.affine, scratch, global_settings, contrast=kind)
        except ValueError as exc:  # an empty χ map: the input's fault
            if not reg.uses_chi_template(kind, settings):
                raise
            raise InputError(image_path, str(exc)) from None
        failure = reg.qc_failure(result, settings)
        if failure:
            raise InputError(image_path, failure)
        coreg_qc = None
        if smk.input.get("coregistration"):  # a T1w on its own grid: onto the maps' grid
            coreg_qc = read_json(smk.input.coregistration_qc)
            result = reg.with_coregistration(
                result, *reg.read_coregistration(smk.input.coregistration, scratch))
        if refine_on_contrast:
            result = reg.contrast_local_stage(result, values, contrast_kind, shape, affine,
                                              scratch, settings)
        native = reg.native_atlas(result, shape, affine, values, contrast_kind, scratch)
        # Flag only, never exclude: it measures the iron contrast a study may be about (low
        # in children, lower SN in RLS), with limits from the phantom only.
        label_qc = reg.label_contrast_qc(native.labels, values, contrast_kind)
        t0 = time.perf_counter()
        reg.save_transforms(result, shape, affine, out.xfm_forward, out.xfm_inverse, scratch,
                            forward_field=native.forward_field)
        timing = {**native.timing, "save_transforms": round(time.perf_counter() - t0, 2)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    deriv = layout.deriv_of(out.qc, smk.wildcards.key)
    sidecars = registration_sidecars(validated["subject"], image_path, kind,
                                     smk.params.bids_dir, deriv)
    save_nifti(native.labels, out.dseg, affine, dtype=np.int16, intent="label")
    write_tsv(native.lookup, out.dseg_tsv)
    write_json(sidecars["dseg_json"], out.dseg_json)
    save_nifti(native.probabilities, out.probseg, native.box_affine, dtype=np.uint8,
               header=reg.probseg_header())
    write_json({**reg.probseg_sidecar(native), **sidecars["probseg"]}, out.probseg_json)
    save_nifti(native.brain_mask, out.brain_mask, affine, dtype=np.uint8)
    write_json(sidecars["brain_mask_json"], out.brain_mask_json)
    write_json(sidecars["xfm_forward_json"], out.xfm_forward_json)
    write_json(sidecars["xfm_inverse_json"], out.xfm_inverse_json)
    record = reg.qc_record(result, native, kind=kind, image_path=image_path,
                           threads=smk.threads, timing=timing)
    record["label_contrast"] = label_qc
    if label_qc["flag"]:
        record["flag"] = "; ".join(f for f in (record.get("flag"), label_qc["flag"]) if f)
    if coreg_qc is not None:
        record["coregistration"] = coreg_qc
        if coreg_qc.get("flag"):
            record["flag"] = "; ".join(f for f in (record.get("flag"),
                                                   f"coregistration: {coreg_qc['flag']}") if f)
    write_json(record, out.qc)
