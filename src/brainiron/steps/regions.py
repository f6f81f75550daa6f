"""Rule ``regions``: regional statistics of every map in every region, on the subject's
own grid; one long table per subject (:mod:`brainiron.regions`).

With refined labels (rule ``refine``), the regions made of refined nuclei get a second row
with ``segmentation`` = ``refined``, changed or not, so that every subject has the same rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import layout
from ..bids import MAP_UNITS, read_contrast
from ..chi_reference import CSF_MIN_FRACTION, chi_csf_reference, voxel_sizes_mm
from ..errors import InputError
from ..io import load_nifti, read_json, write_json, write_tsv
from ..regions import (
    RegionIndex,
    atlas_regions,
    chi_wholebrain_reference,
    map_statistics,
    refined_regions,
    subject_table,
)
from ..tables import column_descriptions

#: How the ``source`` of a χ map brainiron reconstructed from phase is marked in the tables.
QSM_SOURCE = "reconstructed by brainiron-qsm"


def chi_referenced(values: np.ndarray, path: str, smk, brain: np.ndarray,
                   affine: np.ndarray) -> tuple[np.ndarray, str, float]:
    """χ (ppm) with the configured reference subtracted, the reference's name and value
    (ppm); ``csf`` warps the template's CSF class through the saved forward transform."""
    reference = smk.params.chi_reference
    if reference == "wholebrain":
        values, value = chi_wholebrain_reference(values, brain > 0)
    elif reference == "csf":
        # ANTs' threads: the rule's (set before ANTs loads), as in the register step.
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
                              str(getattr(smk, "threads", 1)))
        from ..registration import native_tissue_mask

        csf = native_tissue_mask(values.shape, affine, [str(smk.input.xfm_forward)], "CSF",
                                 CSF_MIN_FRACTION)
        try:
            values, value, _ = chi_csf_reference(values, csf, voxel_sizes_mm(affine),
                                                 smk.params.csf_reference_depth_mm)
        except ValueError as exc:
            raise InputError(path, f"chi_reference csf: {exc}") from None
    else:
        value = np.nan
    return values, reference, value


def main(smk) -> None:
    inp = smk.input
    validated = read_json(inp.validated)
    labels, label_img = load_nifti(inp.dseg, dtype=np.int16)
    probs, _ = load_nifti(inp.probseg, ndim=4)
    prob_meta = read_json(inp.probseg_json)
    box = tuple(slice(s, s + n) for s, n in
                zip(prob_meta["CropStartVoxel"], probs.shape[:3], strict=True))
    brain, _ = load_nifti(inp.brain_mask, dtype=np.uint8)
    voxel_mm3 = float(np.prod(np.sqrt((label_img.affine[:3, :3] ** 2).sum(0))))
    regions = atlas_regions()
    index = RegionIndex(labels, regions, voxel_mm3)
    refined_index = None
    if inp.get("dseg_refined"):
        chosen = refined_regions(regions, smk.params.refined_regions)
        if chosen:
            refined, _ = load_nifti(str(inp.dseg_refined), dtype=np.int16)
            refined_index = RegionIndex(refined, chosen, voxel_mm3)
    rows = []
    for name, kind, path in zip(smk.params.map_names, smk.params.map_kinds, inp.maps,
                                strict=True):
        values, _ = read_contrast(path, kind, validated["unit_factors"])
        reference, ref_value = "none", np.nan
        if name == "Chimap":
            values, reference, ref_value = chi_referenced(values, path, smk, brain,
                                                          label_img.affine)
        source = Path(path).name + (f" ({QSM_SOURCE})" if kind == "qsm" else "")
        rows += map_statistics(index, values, name, MAP_UNITS[name], source,
                               reference=reference, reference_value=ref_value,
                               probabilities=probs,
                               probability_labels=prob_meta["LabelIndices"],
                               probability_slices=box, refined_index=refined_index)
    participant_id, session_id = layout.split_key(smk.wildcards.key)
    b0 = validated["field_strength_T"]  # None: unstated, allowed for chi only
    table = subject_table(rows, participant_id, session_id, read_json(inp.qc),
                          np.nan if b0 is None else float(b0))
    write_tsv(table, smk.output.tsv)
    write_json(column_descriptions(list(table.columns)), smk.output.json)
