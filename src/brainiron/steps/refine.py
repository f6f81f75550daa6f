"""Rule ``refine``: contrast-aware refinement of the small nuclei (:mod:`brainiron.refine`).

Writes the refined native label image and one row per refined nucleus and hemisphere
(status, voxels added and removed, the nucleus and surround levels in the map's units).
"""

from __future__ import annotations

import numpy as np

from ..bids import MAP_UNITS, read_contrast
from ..errors import InputError
from ..io import load_nifti, read_json, save_nifti, write_tsv
from ..refine import qc_table, refine_labels
from ..settings import RefinementSettings


def main(smk) -> None:
    settings = RefinementSettings.from_config(smk.params.settings)
    validated = read_json(smk.input.validated)
    labels, img = load_nifti(smk.input.dseg, dtype=np.int16)
    values, kind = read_contrast(smk.input.contrast, smk.params.contrast_kind,
                                 validated["unit_factors"])
    if values.shape != labels.shape:
        raise InputError(smk.input.contrast, f"grid {values.shape} differs from the labels' "
                                             f"{labels.shape}")
    refined, info = refine_labels(labels, values, settings,
                                  voxel_size_mm=np.sqrt((img.affine[:3, :3] ** 2).sum(0)))
    save_nifti(refined.astype(np.int16), smk.output.dseg, img.affine, dtype=np.int16,
               intent="label")
    write_tsv(qc_table(info, kind, MAP_UNITS[kind]), smk.output.tsv)
