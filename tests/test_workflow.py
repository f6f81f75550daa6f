"""End to end: the Snakemake workflow on a 3-subject phantom at 3 mm, against ground truth.

One workflow run (about a minute on 2 cores) serves every test of this module; the last test
deletes a subject's outputs and checks that only that subject is redone.
"""

import json
import re
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainiron
from brainiron import atlas
from brainiron.workflow import SNAKEFILE

PHANTOM = {"subjects": 3, "seed": 1, "voxel_size": 3.0}
# Accuracy achieved at 3 mm (docs/registration.md), worst over 3 subjects x 2 hemispheres,
# with a small margin: SN Dice 0.88, RN 0.82, GP 0.83, Pu/Ca 0.92, Thal 0.94, DN 0.98;
# R2* mean within 9.8 % of truth (median 2.7 %); chi mean within 0.051 ppm (median 0.018).
# chi errors are stated in ppm: a nucleus's chi (0.05-0.2 ppm) is smaller than its contrast
# with the surrounding white matter (-0.03 ppm), so relative chi errors are ill-conditioned.
MIN_DICE = {"SN": 0.85, "RN": 0.75, "GP": 0.78, "Pu": 0.88, "Ca": 0.88, "Thal": 0.90,
            "DN": 0.90}
CHI_MEDIAN_ABS_PPM = 0.025
CHI_MEAN_ABS_PPM = 0.06
# The mean bound applies to regions of at least this many voxels: at 3 mm an STN has 4-11
# voxels, and the mean of 4 partial-volume voxels (one subject's left STN with the faster
# default registration: 0.064 ppm off, median 0.018) measures the label edge, not the map.
CHI_MEAN_MIN_VOXELS = 8
# 0.054 measured (one nucleus) since a T1w with a chi map takes the chi local stage instead
# of its own (docs/registration.md); 0.04 before.
R2STAR_MEDIAN_REL = 0.06
R2STAR_MEAN_REL = 0.11


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    status = brainiron.run(None, out, cores=2, config={"phantom": PHANTOM})
    assert status == 0
    return out


def _tsv(path):
    return pd.read_csv(path, sep="\t", dtype={"session_id": str})


def _dry_run(out):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(out),
         "--configfile", str(out / "config.yaml"), "--cores", "2", "-n"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def _merged(run_dir):
    regions = _tsv(run_dir / "brainiron/group/regions.tsv")
    truth = _tsv(run_dir / "phantom/derivatives/phantom-truth/truth.tsv")
    merged = regions.merge(truth, on=["participant_id", "region", "hemisphere"],
                           suffixes=("", "_truth"))
    merged["truth"] = np.where(merged["map"] == "Chimap", merged["chi_ppm"],
                               merged["r2star_per_s"])
    return merged


def test_outputs_are_bids_derivatives(run_dir):
    deriv = run_dir / "brainiron"
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "brainiron"
    assert desc["GeneratedBy"][0]["Configuration"]["phantom"]["subjects"] == 3
    anat = deriv / "sub-01" / "anat"
    for name in ("space-individual_atlas-CIT168_dseg.nii.gz", "space-individual_atlas-CIT168"
                 "_dseg.tsv", "space-individual_atlas-CIT168_probseg.nii.gz",
                 "from-MNI152NLin2009cAsym_to-individual_mode-image_xfm.nii.gz",
                 "from-individual_to-MNI152NLin2009cAsym_mode-image_xfm.nii.gz",
                 "desc-regions_stats.tsv", "desc-regions_stats.json",
                 "desc-registration_qc.json"):
        assert (anat / f"sub-01_{name}").is_file(), name
    dseg_tsv = _tsv(anat / "sub-01_space-individual_atlas-CIT168_dseg.tsv")
    assert list(dseg_tsv.columns) == ["index", "name"] and "SNr_L" in set(dseg_tsv["name"])
    # The labels sit on the map's own grid: the map was not resampled.
    dseg = nib.load(anat / "sub-01_space-individual_atlas-CIT168_dseg.nii.gz")
    chi = nib.load(run_dir / "phantom/sub-01/anat/sub-01_Chimap.nii.gz")
    assert dseg.shape == chi.shape and np.allclose(dseg.affine, chi.affine, atol=1e-4)


def test_group_tables(run_dir):
    group = run_dir / "brainiron" / "group"
    long = _tsv(group / "regions.tsv")
    # 3 subjects x 2 maps x 12 regions x 2 hemispheres.
    assert len(long) == 3 * 2 * 12 * 2
    assert set(long["region"]) == {"SN", "SNc_PBP_VTA", "SNr", "RN", "STN", "GP", "GPe",
                                   "GPi", "Pu", "Ca", "Thal", "DN"}
    assert set(long.loc[long["map"] == "Chimap", "units"]) == {"ppm"}
    assert set(long.loc[long["map"] == "R2starmap", "units"]) == {"1/s"}
    assert set(long["group"]) == {"control", "rls"} and long["age"].notna().all()
    sidecar = json.loads((group / "regions.json").read_text())
    missing = [c for c in long.columns if c not in sidecar and c not in ("age", "sex", "group")]
    assert not missing, f"columns without a description: {missing}"
    wide = _tsv(group / "desc-wide_regions.tsv")
    assert len(wide) == 3 and "Chimap_SN_L_mean_ppm" in wide.columns
    assert "R2starmap_Pu_R_mean_per_s" in wide.columns
    row = long.query("participant_id == 'sub-02' and map == 'Chimap' and region == 'SN' "
                     "and hemisphere == 'L'")
    assert wide.set_index("participant_id").loc["sub-02", "Chimap_SN_L_mean_ppm"] == \
        pytest.approx(float(row["mean"].iloc[0]), rel=1e-5)
    assert _tsv(group / "failed.tsv").empty


def test_native_labels_match_the_truth(run_dir):
    members = atlas.composite_members()
    worst = {}
    for sub in ("sub-01", "sub-02", "sub-03"):
        est = np.asarray(nib.load(run_dir / f"brainiron/{sub}/anat/{sub}_space-individual_"
                                            "atlas-CIT168_dseg.nii.gz").dataobj)
        tru = np.asarray(nib.load(run_dir / f"phantom/derivatives/phantom-truth/{sub}/anat/"
                                            f"{sub}_space-individual_atlas-CIT168_dseg.nii.gz"
                                  ).dataobj)
        for region in MIN_DICE:
            for hemi in "LR":
                a, b = np.isin(est, members[(region, hemi)]), np.isin(tru, members[(region, hemi)])
                dice = 2 * (a & b).sum() / (a.sum() + b.sum())
                worst[region] = min(worst.get(region, 1.0), dice)
    print("worst Dice per region:", {k: round(v, 3) for k, v in worst.items()})
    for region, limit in MIN_DICE.items():
        assert worst[region] >= limit, (region, worst[region])


def test_regional_values_match_the_truth(run_dir):
    m = _merged(run_dir)
    chi = m[m["map"] == "Chimap"]
    r2s = m[m["map"] == "R2starmap"]
    chi_median = (chi["median"] - chi["truth"]).abs()
    chi_mean = (chi["mean"] - chi["truth"]).abs()[chi["n_voxels"] >= CHI_MEAN_MIN_VOXELS]
    r2_median = ((r2s["median"] - r2s["truth"]) / r2s["truth"]).abs()
    r2_mean = ((r2s["mean"] - r2s["truth"]) / r2s["truth"]).abs()
    print(f"chi |median-truth| max {chi_median.max():.4f} ppm, |mean-truth| max "
          f"{chi_mean.max():.4f} ppm; R2* median rel max {r2_median.max():.3f}, mean rel max "
          f"{r2_mean.max():.3f}")
    assert chi_median.max() <= CHI_MEDIAN_ABS_PPM
    assert chi_mean.max() <= CHI_MEAN_ABS_PPM
    assert r2_median.max() <= R2STAR_MEDIAN_REL
    assert r2_mean.max() <= R2STAR_MEAN_REL
    # The phantom's large nuclei are measured precisely; registration QC is high.
    big = m[m["region"].isin(["Pu", "Thal"]) & (m["map"] == "R2starmap")]
    assert ((big["mean"] - big["truth"]) / big["truth"]).abs().max() < 0.05
    assert (m["registration_ncc"] > 0.9).all()


def test_second_run_does_nothing_and_a_deleted_subject_is_redone(run_dir):
    assert "Nothing to be done" in _dry_run(run_dir)
    shutil.rmtree(run_dir / "brainiron" / "sub-02")
    plan = _dry_run(run_dir)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.split("Job stats:")[1], re.M))
    assert jobs == {"all": "1", "validate": "1", "register": "1", "regions": "1", "group": "1",
                    "compare": "1", "report_subject": "1", "report": "1", "check": "1",
                    "total": "9"}
    assert "wildcards: folder=sub-02, key=sub-02" in plan
    assert brainiron.run(None, run_dir, cores=2, config={"phantom": PHANTOM}) == 0
    assert (run_dir / "brainiron/sub-02/anat/sub-02_desc-regions_stats.tsv").is_file()
    assert "Nothing to be done" in _dry_run(run_dir)
