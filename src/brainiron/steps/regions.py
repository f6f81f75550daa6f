"""Rule ``regions``: regional statistics of every map in every region, on the subject's
own grid; one long table per subject.

With refined labels (rule ``refine``), every region made of the refined atomic regions gets
a second row with ``segmentation`` = ``refined`` (hard labels: no probability-weighted
statistics), changed or not, so that every subject has the same rows; every other row has
``segmentation`` = ``atlas``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import atlas, layout
from ..bids import MAP_UNITS, read_map
from ..io import load_nifti, read_json, write_json, write_tsv
from ..regions import RegionIndex, chi_wholebrain_reference
from ..tables import column_descriptions


def _refined_index(path: str, regions: dict, regions_refined, voxel_mm3: float):
    """RegionIndex of the refined labels over the regions made only of refined nuclei."""
    refined, _ = load_nifti(path, dtype=np.int16)
    table = atlas.region_table()
    atomic = table[table["kind"] == "atomic"]
    wanted = set(atomic.loc[atomic["region"].isin(list(regions_refined)), "index"].astype(int))
    chosen = {k: v for k, v in regions.items() if v and set(v) <= wanted}
    return RegionIndex(refined, chosen, voxel_mm3) if chosen else None


def main(smk) -> None:
    inp = smk.input
    participant_id, session_id = layout.split_key(smk.wildcards.key)
    validated = read_json(inp.validated)
    labels, label_img = load_nifti(inp.dseg, dtype=np.int16)
    probs, _ = load_nifti(inp.probseg, ndim=4)
    prob_meta = read_json(inp.probseg_json)
    start = prob_meta["CropStartVoxel"]
    box = tuple(slice(s, s + n) for s, n in zip(start, probs.shape[:3], strict=True))
    brain, _ = load_nifti(inp.brain_mask, dtype=np.uint8)
    qc = read_json(inp.qc)
    zooms = np.sqrt((label_img.affine[:3, :3] ** 2).sum(0))
    voxel_mm3 = float(np.prod(zooms))
    table = atlas.region_table()
    available = table[table["available"]]
    regions = {k: v for k, v in atlas.composite_members(table).items()
               if k in set(zip(available["region"], available["hemisphere"], strict=True))}
    index = RegionIndex(labels, regions, voxel_mm3)
    refined_index = None
    if inp.get("dseg_refined"):
        refined_index = _refined_index(str(inp.dseg_refined), regions,
                                       smk.params.refined_regions, voxel_mm3)
    rows = []
    for name, kind, path in zip(smk.params.map_names, smk.params.map_kinds, inp.maps,
                                strict=True):
        if kind == "derived":
            values, _ = load_nifti(path)
        else:
            values, _ = read_map(path, kind, validated["unit_factors"].get(kind, 1.0))
        reference, ref_value = "none", np.nan
        if name == "Chimap" and smk.params.chi_reference == "wholebrain":
            values, ref_value = chi_wholebrain_reference(values, brain > 0)
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
    out.insert(0, "participant_id", participant_id)
    out.insert(1, "session_id", session_id)
    out.insert(4, "atlas", "CIT168+aseg")
    out.insert(5, "segmentation", out.pop("segmentation"))
    out["registration_image"] = qc["registration_image"]
    out["registration_ncc"] = qc.get("ncc")
    out["registration_brain_coverage"] = qc.get("brain_coverage")
    out["registration_flag"] = qc.get("flag", "")
    b0 = validated.get("field_strength_T")  # None: unstated, allowed for chi only
    out["field_strength_T"] = np.nan if b0 is None else float(b0)
    write_tsv(out, smk.output.tsv)
    write_json(column_descriptions(), smk.output.json)
