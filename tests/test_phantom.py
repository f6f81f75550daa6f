import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainiron import atlas, norms
from brainiron.io import read_tsv
from brainiron.phantom import generate_phantom, true_mapping

TRUTH = "derivatives/phantom-truth"


def _truth(root, sub):
    return read_tsv(root / TRUTH / f"sub-{sub}/anat/sub-{sub}_desc-truth_regions.tsv")


def _load(path):
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.float64), img


def test_layout_participants_and_sidecars(phantom_dir):
    people = read_tsv(phantom_dir / "participants.tsv")
    assert list(people.columns) == ["participant_id", "age", "sex", "group"]
    assert list(people["group"]) == ["control", "rls"]
    assert people["age"].between(25, 75).all()
    desc = json.loads((phantom_dir / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw"
    anat = phantom_dir / "sub-01" / "anat"
    tes = [json.loads((anat / f"sub-01_echo-{k}_part-mag_MEGRE.json").read_text())["EchoTime"]
           for k in range(1, 9)]
    assert tes == sorted(tes) and 0.003 < tes[0] < 0.006 and tes[-1] < 0.05
    assert json.loads((anat / "sub-01_Chimap.json").read_text())["Units"] == "ppm"
    # Subjects live in different orientations.
    codes = [nib.aff2axcodes(nib.load(phantom_dir / f"sub-{s}/anat/sub-{s}_T1w.nii.gz").affine)
             for s in ("01", "02")]
    assert codes == [("R", "A", "S"), ("L", "P", "S")]


@pytest.mark.parametrize("sub", ["01", "02"])
def test_regional_map_means_equal_truth_table(phantom_dir, sub):
    anat = phantom_dir / f"sub-{sub}" / "anat"
    labels, _ = _load(phantom_dir / TRUTH / f"sub-{sub}/anat/"
                      f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
    chi, _ = _load(anat / f"sub-{sub}_Chimap.nii.gz")
    r2s, _ = _load(anat / f"sub-{sub}_R2starmap.nii.gz")
    truth = _truth(phantom_dir, sub).set_index(["region", "hemisphere"])
    members = atlas.composite_members()
    checked = 0
    for (region, hemi), idx in members.items():
        if (region, hemi) not in truth.index:
            continue
        mask = np.isin(labels, idx)
        n = int(mask.sum())
        assert n == truth.loc[(region, hemi), "n_voxels"]
        if n < 5:
            continue
        # Noise SD 0.01 ppm and 1 1/s: the regional mean sits within 5 SD/sqrt(n) of truth.
        assert abs(chi[mask].mean() - truth.loc[(region, hemi), "chi_ppm"]) < 5 * 0.01 / n**0.5
        assert abs(r2s[mask].mean() - truth.loc[(region, hemi), "r2star_per_s"]) < 5 / n**0.5
        checked += 1
    assert checked >= 20


def test_magnitude_decays_with_the_true_r2star(phantom_dir):
    anat = phantom_dir / "sub-01" / "anat"
    tissue, _ = _load(phantom_dir / TRUTH / "sub-01/anat/sub-01_space-individual_desc-tissue_dseg"
                                           ".nii.gz")
    truth = _truth(phantom_dir, "01").set_index(["region", "hemisphere"])
    e1, _ = _load(anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz")
    e4, _ = _load(anat / "sub-01_echo-4_part-mag_MEGRE.nii.gz")
    dte = 0.015  # echo-4 minus echo-1, s
    for index, key in [(7, ("Pu", "L")), (23, ("WM", "bilateral")), (9, ("Thal", "L"))]:
        mask = tissue == index
        # Ratio of means cancels the bias field; noise is small at SNR 100.
        r2s = -np.log(e4[mask].mean() / e1[mask].mean()) / dte
        assert r2s == pytest.approx(truth.loc[key, "r2star_per_s"], rel=0.03)


def test_truth_iron_follows_norms_calibrations_and_groups(tmp_path):
    out = tmp_path / "p"
    truth = generate_phantom(out, n_subjects=8, seed=3, voxel_size=(4.0, 4.0, 4.0),
                             between_subject_cv=0.0, rls_sn_effect=-0.2)
    sn = truth[(truth["region"] == "SNr")]
    expected = [float(norms.expected_iron("SN", a)) * 1.08 for a in sn["age"]]
    control = sn["group"] == "control"
    # Between-subject CV 0: only the +-3 % hemisphere jitter remains.
    ratio = sn["iron_mg_per_kg"] / np.array(expected)
    assert ratio[control].between(0.9, 1.1).all()
    assert ratio[~control].between(0.8 * 0.9, 0.8 * 1.1).all()
    # Pallidum is not affected by group.
    gp = truth[truth["region"] == "GPe"]
    assert (gp["iron_mg_per_kg"] / np.array([float(norms.expected_iron("GP", a))
                                              for a in gp["age"]])).between(0.9, 1.1).all()
    # chi and R2* follow the phantom's calibrations from iron.
    cal = norms.calibrations()
    nuclei = truth[truth["region"].isin(["Pu", "Ca", "RN", "GPi"])]
    chi = cal.loc["langkammer2012_chi"]
    np.testing.assert_allclose(nuclei["chi_ppm"],
                               chi["slope"] * nuclei["iron_mg_per_kg"] + chi["intercept"],
                               atol=1e-9)
    r2 = cal.loc["gelman1999_invivo_r2star"]
    np.testing.assert_allclose(nuclei["r2star_per_s"],
                               r2["slope"] * nuclei["iron_mg_per_kg"] + r2["intercept"],
                               atol=1e-9)


def test_true_transform_maps_native_nuclei_onto_the_template(phantom_dir):
    for sub in ("01", "02"):
        anat = phantom_dir / TRUTH / f"sub-{sub}" / "anat"
        labels, img = _load(anat / f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
        stem = f"sub-{sub}_from-individual_to-MNI152NLin2009cAsym_mode-points"
        matrix = np.array(json.loads((anat / f"{stem}_desc-affine_xfm.json").read_text())
                          ["matrix"])
        disp, _ = _load(anat / f"{stem}_desc-displacement_xfm.nii.gz")
        tpl = atlas.template_labels()
        for index in (3, 7, 15, 19):  # RN_L, Pu_L, GPe_R, Thal_R
            ijk = np.argwhere(labels == index)
            world = (img.affine[:3, :3] @ ijk.T).T + img.affine[:3, 3]
            mni = true_mapping(world, matrix, disp, img.affine).mean(0)
            t_ijk = np.argwhere(tpl.data == index).mean(0)
            centre = tpl.affine[:3, :3] @ t_ijk + tpl.affine[:3, 3]
            # Nearest-neighbour sampling at 3 mm moves a centroid by well under a voxel.
            assert np.linalg.norm(mni - centre) < 1.5, (sub, index)


def test_deterministic_for_a_seed(tmp_path):
    def digest(root):
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.nii.gz")):
            h.update(path.name.encode())
            h.update(np.asarray(nib.load(path).dataobj).tobytes())
        return h.hexdigest()

    a = generate_phantom(tmp_path / "a", n_subjects=1, seed=5, voxel_size=(4, 4, 4))
    b = generate_phantom(tmp_path / "b", n_subjects=1, seed=5, voxel_size=(4, 4, 4))
    generate_phantom(tmp_path / "c", n_subjects=1, seed=6, voxel_size=(4, 4, 4))
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    pd.testing.assert_frame_equal(a, b)


def test_anisotropic_oblique_partial_coverage(tmp_path):
    out = tmp_path / "p"
    generate_phantom(out, n_subjects=1, voxel_size=(2.0, 2.5, 3.5), orientation="oblique",
                     coverage=0.4, with_t1w=False, with_r2starmap=False)
    anat = out / "sub-01" / "anat"
    img = nib.load(anat / "sub-01_Chimap.nii.gz")
    np.testing.assert_allclose(img.header.get_zooms(), (2.0, 2.5, 3.5), rtol=1e-6)
    rot = img.affine[:3, :3] / np.array([2.0, 2.5, 3.5])
    assert np.abs(rot - np.round(rot)).max() > 0.1  # oblique: not a permutation of axes
    assert not (anat / "sub-01_T1w.nii.gz").exists()
    assert not (anat / "sub-01_R2starmap.nii.gz").exists()
    truth = _truth(out, "01").set_index(["region", "hemisphere"])
    # The slab keeps the midbrain but loses much of the brain.
    assert truth.loc[("SN", "L"), "n_voxels"] > 0
    full = generate_phantom(tmp_path / "full", n_subjects=1, voxel_size=(2.0, 2.5, 3.5),
                            orientation="oblique")
    ratio = truth.loc[("WM", "bilateral"), "n_voxels"] / full.set_index(
        ["region", "hemisphere"]).loc[("WM", "bilateral"), "n_voxels"]
    assert 0.3 < ratio < 0.8


def test_refuses_to_overwrite(phantom_dir):
    with pytest.raises(FileExistsError):
        generate_phantom(phantom_dir, n_subjects=1)
