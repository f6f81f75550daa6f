"""Rule ``refine``: contrast-aware refinement of the small nuclei (:mod:`brainiron.refine`).

Writes the refined native label image and one row per refined nucleus and hemisphere
(status, voxels added and removed, the nucleus and surround levels in the map's units).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bids import MAP_UNITS, read_contrast
from ..errors import InputError
from ..io import load_nifti, read_json, save_nifti, write_tsv
from ..refine import refine_nuclei
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
    regions = tuple(settings.regions)
    try:
        refined, info = refine_nuclei(
            labels, np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), regions=regions,
            margin_voxels=int(settings.margin_voxels),
            min_contrast=float(settings.min_contrast),
            max_volume_ratio=float(settings.max_volume_ratio),
            voxel_size_mm=np.sqrt((img.affine[:3, :3] ** 2).sum(0)))
    except Exception as exc:  # noqa: BLE001 - optional step: keep the atlas labels, say why
        refined = labels
        info = pd.DataFrame({"region": list(regions), "hemisphere": "",
                             "label_indices": [[] for _ in regions],
                             "status": f"failed: {type(exc).__name__}: {exc}"})
    info.insert(0, "map", kind)
    info.insert(1, "units", MAP_UNITS[kind])
    info["label_indices"] = info["label_indices"].map(lambda x: "+".join(str(i) for i in x))
    save_nifti(refined.astype(np.int16), smk.output.dseg, img.affine, dtype=np.int16,
               intent="label")
    write_tsv(info, smk.output.tsv)
