"""Discovery of MEGRE phase echoes (part-phase) beside their magnitude (issue 15 item 1),
and the plan that reconstructs χ from them."""

import shutil

import nibabel as nib
import numpy as np

from brainiron.bids import discover


def _anat(root):
    return root / "sub-01" / "anat"


def _add_phase(root, echoes=None):
    """part-phase twins (header and grid of the magnitude) of the given echoes (all)."""
    anat = _anat(root)
    for mag in sorted(anat.glob("sub-01_echo-*_part-mag_MEGRE.nii.gz")):
        n = int(mag.name.split("_echo-")[1].split("_")[0])
        if echoes is None or n in echoes:
            for ext in (".nii.gz", ".json"):
                src = mag.with_name(mag.name.replace(".nii.gz", ext))
                shutil.copy(src, src.with_name(src.name.replace("part-mag", "part-phase")))


def _drop_chimap(root):
    for ext in (".nii.gz", ".json"):
        (_anat(root) / f"sub-01_Chimap{ext}").unlink()


def _subject(root):
    return next(s for s in discover(root).subjects if s.subject == "01")


def test_phase_echoes_in_echo_order_and_a_reconstruction_plan(dataset_copy, tmp_path):
    _drop_chimap(dataset_copy)
    _add_phase(dataset_copy)
    subj = _subject(dataset_copy)
    assert not subj.errors
    assert len(subj.phase) == len(subj.megre) == 8
    assert [p.name for p in subj.phase] == [m.name.replace("part-mag", "part-phase")
                                           for m in subj.megre]
    assert not any("part-phase" in p for p, _ in subj.ignored)
    plan = subj.plan(["Chimap", "R2starmap"], tmp_path / "deriv")
    assert plan.reconstruct_chi and plan.phase == tuple(str(p) for p in subj.phase)
    chi = str(tmp_path / "deriv/sub-01/anat/sub-01_Chimap.nii.gz")
    assert plan.maps["Chimap"] == (chi, "qsm")
    assert list(plan.maps) == ["Chimap", "R2starmap"]
    assert (plan.contrast_image, plan.contrast_kind) == (chi, "qsm")
    # R2* only asked for: no reconstruction.
    assert not subj.plan(["R2starmap"], tmp_path / "deriv").reconstruct_chi
    # The round trip through the validate rule's params keeps the phase.
    assert type(subj).from_dict(subj.to_dict()).phase == subj.phase


def test_a_subject_with_a_chimap_keeps_it_and_lists_its_phase_as_ignored(dataset_copy,
                                                                          tmp_path):
    _add_phase(dataset_copy)
    subj = _subject(dataset_copy)
    assert not subj.errors and subj.phase == []
    assert "phase" not in subj.to_dict()  # validate params as before phase existed
    reasons = [r for p, r in subj.ignored if "part-phase" in p]
    assert len(reasons) == 8 and all("has a Chimap" in r for r in reasons)
    plan = subj.plan(["Chimap", "R2starmap"], tmp_path)
    assert not plan.reconstruct_chi and plan.maps["Chimap"][1] == "Chimap"


def test_a_missing_twin_is_a_one_line_error_naming_the_file(dataset_copy):
    _drop_chimap(dataset_copy)
    _add_phase(dataset_copy, echoes={1, 2, 4, 5, 6, 7, 8})
    subj = _subject(dataset_copy)
    assert len(subj.errors) == 1 and "\n" not in subj.errors[0]
    assert "sub-01_echo-3_part-mag_MEGRE.nii.gz" in subj.errors[0]
    assert "no part-phase twin" in subj.errors[0]


def test_phase_without_magnitude_twin(dataset_copy):
    _drop_chimap(dataset_copy)
    _add_phase(dataset_copy)
    for ext in (".nii.gz", ".json"):
        (_anat(dataset_copy) / f"sub-01_echo-8_part-mag_MEGRE{ext}").unlink()
    subj = _subject(dataset_copy)
    assert "sub-01_echo-8_part-phase_MEGRE.nii.gz" in subj.errors[0]
    assert "without its part-mag twin" in subj.errors[0]


def test_phase_on_another_grid(dataset_copy):
    _drop_chimap(dataset_copy)
    _add_phase(dataset_copy)
    path = _anat(dataset_copy) / "sub-01_echo-2_part-phase_MEGRE.nii.gz"
    img = nib.load(path)
    affine = img.affine.copy()
    affine[:3, 3] += 1.5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)
    subj = _subject(dataset_copy)
    assert len(subj.errors) == 1
    assert str(path) in subj.errors[0] and "phase grid" in subj.errors[0]
    assert "sub-01_echo-2_part-mag_MEGRE.nii.gz" in subj.errors[0]
