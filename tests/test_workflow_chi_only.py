"""χ-only subjects through the workflow: χ-template registration and contrast-aware refinement.

The phantom's subjects get a χ map and nothing else (no T1w, no magnitude, no R2* map), and
the run switches refinement on. One run (2 subjects at 3 mm) serves every test. The same
subjects with a T1w are tested in test_workflow.py; the per-subject comparison of the χ and
the T1w registrations is in test_registration_templates.py.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainiron
from brainiron import atlas

pytestmark = pytest.mark.slow

PHANTOM = {"subjects": 2, "seed": 1, "voxel_size": 3.0, "t1w": False, "megre": False,
           "r2starmap": False}
# test_workflow.py's worst-case Dice for the T1w path at 3 mm, less the 0.05.
MIN_DICE_CHI = {"SN": 0.80, "RN": 0.70, "GP": 0.73, "Pu": 0.83, "Ca": 0.83, "Thal": 0.85,
                "DN": 0.85}
ALL_REGIONS = {"SN", "SNc_PBP_VTA", "SNr", "RN", "STN", "GP", "GPe", "GPi", "Pu", "Ca", "Thal",
               "DN"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("chi-only")
    status = brainiron.run(None, out, cores=2,
                           config={"phantom": PHANTOM, "refinement": {"enabled": True}})
    assert status == 0
    return out


def _tsv(path):
    return pd.read_csv(path, sep="\t", dtype={"session_id": str})


def _labels(path):
    return np.asarray(nib.load(path).dataobj).astype(np.int16)


def _dice(est, truth, ids):
    a, b = np.isin(est, ids), np.isin(truth, ids)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def _subjects(run_dir):
    for anat in sorted((run_dir / "brainiron").glob("sub-*/anat")):
        sub = anat.parent.name
        truth = (run_dir / "phantom" / "derivatives" / "phantom-truth" / sub / "anat"
                 / f"{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
        yield sub, anat, _labels(truth)


def test_the_phantom_is_chi_only(run_dir):
    anat = run_dir / "phantom" / "sub-01" / "anat"
    assert [p.name for p in sorted(anat.glob("*.nii.gz"))] == ["sub-01_Chimap.nii.gz"]


def test_registered_on_chi_with_every_region(run_dir):
    regions = _tsv(run_dir / "brainiron/group/regions.tsv")
    assert set(regions["map"]) == {"Chimap"}
    assert set(regions["registration_image"]) == {"Chimap"}
    assert (regions["registration_flag"].fillna("") == "").all()
    atlas_rows = regions[regions["segmentation"] == "atlas"]
    for pid, rows in atlas_rows.groupby("participant_id"):
        assert set(zip(rows["region"], rows["hemisphere"], strict=True)) == \
            {(r, h) for r in ALL_REGIONS for h in "LR"}, pid
        assert rows.set_index(["region", "hemisphere"])["n_valid"].min() > 0, pid
    for sub, anat, _ in _subjects(run_dir):
        qc = json.loads((anat / f"{sub}_desc-registration_qc.json").read_text())
        assert qc["registration_image"] == "Chimap"
        assert qc["template_contrast"].startswith("chi")
        assert qc["mask_dice"] > 0.95 and qc["brain_coverage"] > 0.95


def test_chi_registration_dice(run_dir):
    table = atlas.region_table()
    members = atlas.composite_members(table)
    for sub, anat, truth in _subjects(run_dir):
        est = _labels(anat / f"{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
        for region, floor in MIN_DICE_CHI.items():
            for hemi in "LR":
                ids = members[(region, hemi)]
                assert _dice(est, truth, ids) >= floor, (sub, region, hemi)


def test_refinement_keeps_or_improves_the_nuclei(run_dir):
    table = atlas.region_table()
    members = atlas.composite_members(table)
    regions = _tsv(run_dir / "brainiron/group/regions.tsv")
    refined_rows = regions[regions["segmentation"] == "refined"]
    assert set(refined_rows["region"]) <= {"SN", "SNc_PBP_VTA", "SNr", "RN", "STN"}
    assert len(refined_rows) > 0
    changed = 0
    for sub, anat, truth in _subjects(run_dir):
        est = _labels(anat / f"{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
        ref = _labels(anat / f"{sub}_space-individual_atlas-CIT168_desc-refined_dseg.nii.gz")
        qc = _tsv(anat / f"{sub}_desc-refinement_qc.tsv")
        assert set(qc["region"]) == {"SN", "RN", "STN"} and set(qc["map"]) == {"Chimap"}
        # Refinement touches only the refined nuclei.
        others = ~np.isin(est, [1, 2, 3, 4, 11, 12, 13, 14]) & \
            ~np.isin(ref, [1, 2, 3, 4, 11, 12, 13, 14])
        assert np.array_equal(est[others], ref[others])
        changed += int((est != ref).sum())
        for region in ("SN", "RN", "STN"):
            for hemi in "LR":
                ids = members[(region, hemi)]
                # On a good registration refinement must not make things worse.
                assert _dice(ref, truth, ids) >= _dice(est, truth, ids) - 0.02, \
                    (sub, region, hemi)
    assert changed > 0
    wide = _tsv(run_dir / "brainiron/group/desc-wide_regions.tsv")
    assert "Chimap_SN_L_refined_mean_ppm" in wide and "Chimap_SN_L_mean_ppm" in wide
    comparison = _tsv(run_dir / "brainiron/group/group_comparison.tsv")
    if not comparison.empty:
        assert not comparison.duplicated(["outcome", "map", "region", "hemisphere",
                                          "group"]).any()
    html = (run_dir / "brainiron/report/index.html").read_text()
    assert 'id="refinement-table"' in html
