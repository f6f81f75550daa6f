"""Rule ``refine``: contrast-aware refinement of the small nuclei (:mod:`brainiron.refine`).

Writes the refined native label image and one row per refined nucleus and hemisphere
(status, voxels added and removed, the nucleus and surround levels in the map's units).
"""

from __future__ import annotations

import numpy as np

from .. import layout
from ..bids import MAP_UNITS, read_contrast
from ..errors import InputError
from ..io import load_nifti, read_json, save_nifti, write_json, write_tsv
from ..refine import qc_table, refine_labels
from ..settings import RefinementSettings
from ..sidecars import image_sidecar, source_uri
from ..tables import table_descriptions


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
    table = qc_table(info, kind, MAP_UNITS[kind])
    write_tsv(table, smk.output.tsv)
    write_json(table_descriptions("refinement_qc", list(table.columns)), smk.output.tsv_json)
    atlas = read_json(smk.input.dseg_json)

    deriv = layout.deriv_of(smk.output.dseg, smk.wildcards.key)

    def uri(path):
        return source_uri(path, smk.params.bids_dir, deriv)

    write_json({**image_sidecar(
        "the atlas labels with the small nuclei's boundaries refined from the contrast of the "
        f"{kind} map (brainiron.refine; the other labels as registered)",
        [uri(smk.input.dseg), uri(smk.input.contrast)],
        spatial_reference=atlas["SpatialReference"], Manual=False),
        **{k: atlas[k] for k in ("index", "name") if k in atlas}}, smk.output.dseg_json)
