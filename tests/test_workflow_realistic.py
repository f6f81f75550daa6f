"""The default workflow on the realistic phantom (issue 14): a T1w on its own sagittal grid
with head motion (coregistered), a magnitude subject, a χ-only subject; B-spline deformations,
veins, streaking, an eroded χ mask with NaN outside. Labels and regional values are checked
against the phantom's truth, which brainiron's code did not compute.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainiron
from brainiron import atlas
from brainiron.phantom import generate_phantom

PHANTOM = {"n_subjects": 4, "seed": 8, "realism": "realistic", "voxel_size": (3.0, 3.0, 3.0),
           "t1w_voxel_size": 2.0, "image_sets": ("T1w", "MEGRE", "Chimap", "magnitude"),
           "chi_recon": "tv", "chi_outside": "nan"}
NUCLEI = ("SN", "RN", "STN", "GP", "Pu", "Ca", "Thal", "DN")
# Mean / worst nucleus Dice per registration path at 3 mm (maps) / 2 mm (T1w). Measured:
# T1w 0.892 / 0.714, MEGRE 0.938 / 0.879, chi only 0.904 / 0.706 (the worst: an STN of a few
# voxels), magnitude only (refined on its fitted R2*) 0.935 / 0.867 (0.71 / 0.25 without
# the R2* local stage at 2x2x3 mm); at 2x2x3 mm see docs/registration.md. The issue's
# 1 mm targets are 0.90 / 0.80 (T1w) and 0.85 / 0.75 (magnitude, chi only).
MIN_DICE = {"T1w": (0.85, 0.65), "MEGRE": (0.88, 0.80), "Chimap": (0.85, 0.65),
            "magnitude": (0.88, 0.78)}
#: The registration image of each image set (magnitude: the first echo, refined on R2*).
REGISTRATION_IMAGE = {"T1w": "T1w", "MEGRE": "MEGRE", "Chimap": "Chimap", "magnitude": "MEGRE"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic")
    generate_phantom(root / "bids", **PHANTOM)
    assert brainiron.run(root / "bids", root / "out", cores=2) == 0
    return root / "bids", root / "out" / "brainiron"


def test_every_path_places_the_nuclei(run):
    bids, deriv = run
    members = atlas.composite_members()
    for k, path in enumerate(PHANTOM["image_sets"], start=1):
        sub = f"sub-{k:02d}"
        anat = deriv / sub / "anat"
        qc = json.loads((anat / f"{sub}_desc-registration_qc.json").read_text())
        assert qc["registration_image"] == REGISTRATION_IMAGE[path] and not qc["flag"], qc["flag"]
        est = np.asarray(nib.load(anat / f"{sub}_space-individual_atlas-CIT168_dseg.nii.gz"
                                  ).dataobj)
        tru = np.asarray(nib.load(bids / f"derivatives/phantom-truth/{sub}/anat/{sub}_space-"
                                         "individual_atlas-CIT168_dseg.nii.gz").dataobj)
        dice = []
        for region in NUCLEI:
            for hemi in "LR":
                a, b = np.isin(est, members[(region, hemi)]), np.isin(tru, members[(region, hemi)])
                dice.append(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
        print(path, f"mean Dice {np.mean(dice):.3f} worst {np.min(dice):.3f}",
              "chi local stage:", qc.get("chi_local_stage"),
              "R2* local stage:", qc.get("r2star_local_stage"))
        mean_min, worst_min = MIN_DICE[path]
        assert np.mean(dice) >= mean_min and np.min(dice) >= worst_min, (path, dice)
        if path == "T1w":
            assert qc["coregistration"]["flag"] == ""
            assert "local_box_shape" in qc["chi_local_stage"]
            # the χ local stage replaces the T1w's own
            assert "local_box_shape" not in qc and not qc["settings"]["local_refinement"]
        if path == "magnitude":
            assert "local_box_shape" in qc["r2star_local_stage"]


def test_regional_chi_near_the_truth(run):
    bids, deriv = run
    regions = pd.read_csv(deriv / "group/regions.tsv", sep="\t")
    truth = pd.read_csv(bids / "derivatives/phantom-truth/truth.tsv", sep="\t")
    chi = regions[regions["map"] == "Chimap"].merge(
        truth, on=["participant_id", "region", "hemisphere"])
    nuclei = chi[chi["region"].isin(["SNr", "SNc_PBP_VTA", "RN", "GPe", "GPi", "Pu", "Ca",
                                     "DN"])]
    err = (nuclei["mean"] - nuclei["chi_ppm"]).abs()
    print(f"chi |mean - truth| in the nuclei: median {err.median():.4f}, max {err.max():.4f} "
          "ppm")
    assert err.median() < 0.015 and err.max() < 0.06  # measured 0.0064 / 0.0232 ppm


def test_regional_r2star_of_the_magnitude_only_subject(run):
    """The magnitude-only subject: R2* fitted by the workflow, labels from the registration
    on the magnitude refined on that R2*; its nuclei against the phantom's R2* truth."""
    bids, deriv = run
    sub = f"sub-{PHANTOM['image_sets'].index('magnitude') + 1:02d}"
    regions = pd.read_csv(deriv / "group/regions.tsv", sep="\t")
    truth = pd.read_csv(bids / "derivatives/phantom-truth/truth.tsv", sep="\t")
    r2s = regions[(regions["map"] == "R2starmap") & (regions["participant_id"] == sub)].merge(
        truth, on=["participant_id", "region", "hemisphere"])
    nuclei = r2s[r2s["region"].isin(["SNr", "RN", "GPe", "GPi", "Pu", "Ca", "Thal", "DN"])]
    assert len(nuclei) == 16
    rel = ((nuclei["mean"] - nuclei["r2star_per_s"]) / nuclei["r2star_per_s"]).abs()
    print(f"R2* |mean - truth| / truth in the nuclei of {sub}: median {rel.median():.3f}, "
          f"max {rel.max():.3f}")
    assert rel.median() < 0.05 and rel.max() < 0.25  # measured 0.011 / 0.112
