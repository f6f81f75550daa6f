"""A phase-only subject through the workflow (issue 15 items 6-8): the phantom's subject has a
T1w, an R2* map and MEGRE magnitude + phase echoes but no χ map, so rule ``qsm`` reconstructs
χ, which is quantified like any χ map, drives the dentate and the χ local stage, and is
marked in the tables. One run (1 subject at 4 mm, participant level) serves every test.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainiron
import qsm_helpers as h

pytestmark = pytest.mark.slow

PHANTOM = {"subjects": 1, "seed": 0, "voxel_size": 4.0, "chimap": False, "phase": True}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("qsm")
    status = brainiron.run(None, out, cores=2, config={"phantom": PHANTOM},
                           analysis_level="participant")
    assert status == 0
    return out


def _anat(run_dir):
    return run_dir / "brainiron" / "sub-01" / "anat"


def _chi_rows(run_dir):
    table = pd.read_csv(_anat(run_dir) / "sub-01_desc-regions_stats.tsv", sep="\t")
    return table[table["map"] == "Chimap"]


def test_the_phantom_has_phase_and_no_chi(run_dir):
    anat = run_dir / "phantom" / "sub-01" / "anat"
    assert not list(anat.glob("*Chimap*"))
    assert len(list(anat.glob("*_part-phase_MEGRE.nii.gz"))) == 8


def test_chi_rows_are_marked_as_reconstructed(run_dir):
    rows = _chi_rows(run_dir)
    assert len(rows) > 0
    assert set(rows["source"]) == {"sub-01_Chimap.nii.gz (reconstructed by brainiron-qsm)"}
    qc = json.loads((_anat(run_dir) / "sub-01_desc-registration_qc.json").read_text())
    assert "chi_local_stage" in qc  # the χ local stage ran on the reconstructed χ
    assert all(qc["dentate"][h]["found"] and "Chimap" in qc["dentate"][h]["method"]
               for h in "LR")


def test_the_sidecar_holds_the_consensus_items(run_dir):
    anat = _anat(run_dir)
    sidecar = json.loads((anat / "sub-01_Chimap.json").read_text())
    assert sidecar["Units"] == "ppm" and sidecar["MagneticFieldStrength"] == 3.0
    assert len(sidecar["Sources"]) == 16 and len(sidecar["EchoTime"]) == 8
    record = sidecar["QSM"]
    for item in ("software", "units", "inputs", "phase_scaling", "offset_removal",
                 "unwrapping", "echo_combination", "mask", "background_removal",
                 "dipole_inversion", "referencing", "settings"):
        assert item in record, item
    assert record["software"]["name"] == "brainiron"
    assert record["unwrapping"]["algorithm"] == "exact"
    assert record["background_removal"]["algorithm"] == "vsharp"
    assert record["dipole_inversion"]["algorithm"] == "tv_admm"
    assert record["referencing"]["reference"] == "whole_brain"
    field = json.loads((anat / "sub-01_desc-localfield_fieldmap.json").read_text())
    assert field["Units"] == "ppm"
    mask = nib.load(anat / "sub-01_space-individual_desc-qsm_mask.nii.gz")
    chi = nib.load(anat / "sub-01_Chimap.nii.gz")
    assert np.allclose(mask.affine, chi.affine)
    assert int(np.asarray(mask.dataobj).sum()) == record["background_removal"][
        "mask_voxels_after"]


def test_regional_chi_against_the_phantom_truth(run_dir):
    """Reconstructed χ in the registered atlas regions vs the truth, referenced like the
    reconstruction (the truth's mean over the QSM mask subtracted).

    Measured (seed 0, 4 mm, registration included, 24 atlas rows): median error -12 ppb
    (TV-ADMM underestimates small nuclei at 4 mm, and partial volume with the registered
    labels); regions of >= 10 voxels within 33 ppb (GPi R -32), the 3-voxel right STN -61
    ppb; r(measured, truth) > 0.9. The 1 mm target of the issue (+-10 ppb) is the
    benchmark's, not this coarse run's.
    """
    rows, error = h.chi_rows_against_truth(_anat(run_dir), run_dir / "phantom")
    assert len(rows) >= 20
    big = rows["n_voxels"] >= 10
    assert big.sum() >= 8
    assert error[big].abs().max() < 40, error[big].tolist()
    assert error.abs().max() < 75, error.tolist()
    assert -25 < error.median() < 5, error.tolist()
    assert np.corrcoef(rows["mean"], rows["chi_ppm"])[0, 1] > 0.9


REALISTIC = {"n_subjects": 1, "seed": 21, "realism": "realistic", "voxel_size": (2.0, 2.0, 3.0),
             "t1w_voxel_size": 2.0, "image_sets": ("magnitude",), "with_phase": True}


@pytest.fixture(scope="module")
def realistic_run(tmp_path_factory):
    """A realistic phase-only subject: magnitude + phase on an axial-oblique 2 x 2 x 3 mm grid
    stored LPS (B0, along world z, is oblique to the slices), χ with veins and white-matter
    heterogeneity, no T1w and no χ map."""
    from brainiron.phantom import generate_phantom

    root = tmp_path_factory.mktemp("qsm_realistic")
    generate_phantom(root / "bids", **REALISTIC)
    assert brainiron.run(root / "bids", root / "out", cores=2,
                         analysis_level="participant") == 0
    return root / "bids", root / "out" / "brainiron" / "sub-01" / "anat"


def test_realistic_oblique_b0_is_read_from_the_affine(realistic_run):
    bids, anat = realistic_run
    affine = nib.load(anat / "sub-01_Chimap.nii.gz").affine
    rotation = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    expected = np.linalg.solve(rotation, [0.0, 0.0, 1.0])  # world z in voxel axes
    assert abs(expected[2]) < np.cos(np.radians(10))  # the slices are oblique to B0
    record = json.loads((anat / "sub-01_Chimap.json").read_text())["QSM"]
    np.testing.assert_allclose(record["inputs"]["b0_direction_voxel"], expected, atol=1e-6)


def test_realistic_regional_chi_against_the_truth(realistic_run):
    """Measured (seed 21): median −12 ppb, range −51 (SNr R: its registered label, the truth
    labels give −6) … +3 ppb, r = 0.975 over 24 atlas rows."""
    bids, anat = realistic_run
    rows, error = h.chi_rows_against_truth(anat, bids)
    assert rows["source"].str.endswith("(reconstructed by brainiron-qsm)").all()
    assert len(rows) >= 20
    assert error.abs().max() < 65, error.tolist()
    assert -25 < error.median() < 0, error.tolist()
    assert np.corrcoef(rows["mean"], rows["chi_ppm"])[0, 1] > 0.95
