import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainiron.bids import discover, load_map, validate_subject
from brainiron.errors import InputError


def _anat(root, sub="01"):
    return root / f"sub-{sub}" / "anat"


def _rewrite(path, fn):
    """Rewrite a NIfTI's data with fn(data, img) -> (data, affine)."""
    img = nib.load(path)
    data, affine = fn(np.asarray(img.dataobj, dtype=np.float32), img)
    nib.save(nib.Nifti1Image(data, affine), path)


def _subject(root, sub="01", **kw):
    ds = discover(root, **kw)
    return next(s for s in ds.subjects if s.subject == sub)


def _error(root, sub="01", validate=False, **kw):
    subj = _subject(root, sub, **kw)
    if validate and not subj.errors:
        with pytest.raises(InputError) as err:
            validate_subject(subj)
        return str(err.value)
    assert subj.errors, "expected a discovery error"
    return subj.errors[0]


def test_phantom_reads_back_with_no_warnings(phantom_dir):
    ds = discover(phantom_dir)
    assert [s.key for s in ds.subjects] == ["sub-01", "sub-02"]
    assert ds.ignored_table().empty and not ds.failed
    for subj in ds.subjects:
        assert set(subj.maps) == {"Chimap", "R2starmap"}
        assert subj.registration_kind == "T1w"
        assert len(subj.megre) == 8 and subj.echo_times[0] == pytest.approx(0.004)
        assert subj.field_strength == 3.0
        report = validate_subject(subj)
        assert report.notes == [] and report.voxel_size_mm == pytest.approx((3.0, 3.0, 3.0))


def test_truncated_map_is_reported_at_validation(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_Chimap.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    message = _error(dataset_copy, validate=True)
    assert "sub-01_Chimap.nii.gz: truncated or corrupt image data" in message


def test_wrong_dimensionality(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_R2starmap.nii.gz"
    _rewrite(path, lambda d, img: (np.stack([d, d], -1), img.affine))
    assert "sub-01_R2starmap.nii.gz: expected a 3D image, found 4D" in _error(dataset_copy)


@pytest.mark.parametrize("value, message", [
    (np.nan, "the Chimap is all NaN"),
    (0.0, "the Chimap is all zero"),
])
def test_all_nan_or_zero_map(dataset_copy, value, message):
    path = _anat(dataset_copy) / "sub-01_Chimap.nii.gz"
    _rewrite(path, lambda d, img: (np.full_like(d, value), img.affine))
    assert f"sub-01_Chimap.nii.gz: {message}" in _error(dataset_copy, validate=True)


def test_inf_values(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_R2starmap.nii.gz"

    def poke(d, img):
        d[10, 10, 10] = np.inf
        return d, img.affine

    _rewrite(path, poke)
    assert "contains 1 infinite values" in _error(dataset_copy, validate=True)


def test_one_slice_short_map(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_R2starmap.nii.gz"
    _rewrite(path, lambda d, img: (d[:, :, :-1], img.affine))
    message = _error(dataset_copy)
    assert message.startswith(str(path))
    assert "differs from sub-01_Chimap.nii.gz" in message and "share one grid" in message


def test_t1w_on_another_grid(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_T1w.nii.gz"
    _rewrite(path, lambda d, img: (d[1:, :, :], img.affine @ np.array(
        [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])))
    subj = _subject(dataset_copy)  # default t1w_grid: coregister
    assert not subj.errors and subj.t1w_alignment == "coregister"
    assert "t1w_grid: coregister" in _subject(dataset_copy, t1w_grid="same").errors[0]
    subj = _subject(dataset_copy, t1w_grid="world")
    assert not subj.errors and subj.registration_kind == "T1w"
    assert subj.t1w_alignment == "world"


def test_missing_echo(dataset_copy):
    for ext in (".nii.gz", ".json"):
        (_anat(dataset_copy) / f"sub-01_echo-3_part-mag_MEGRE{ext}").unlink()
    assert "echo-3 missing in the MEGRE series (found echoes [1, 2, 4, 5, 6, 7, 8])" in \
        _error(dataset_copy)


def _edit_sidecar(path, **changes):
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, message", [
    ({"EchoTime": None}, "EchoTime missing from the JSON sidecar"),
    ({"EchoTime": 14.0}, "EchoTime 14 looks like milliseconds; BIDS requires seconds"),
    ({"EchoTime": "fast"}, "EchoTime must be a number"),
])
def test_echo_time_problems(dataset_copy, changes, message):
    sidecar = _anat(dataset_copy) / "sub-01_echo-3_part-mag_MEGRE.json"
    _edit_sidecar(sidecar, **changes)
    text = _error(dataset_copy)
    assert text.startswith(str(sidecar)) and message in text


def test_non_increasing_echo_times(dataset_copy):
    _edit_sidecar(_anat(dataset_copy) / "sub-01_echo-4_part-mag_MEGRE.json", EchoTime=0.009)
    assert "echo times do not increase with the echo number (echo-3: 0.014 s, echo-4: 0.009 s)" \
        in _error(dataset_copy)


def test_malformed_sidecar(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_echo-2_part-mag_MEGRE.json"
    path.write_text('{"EchoTime": 0.009,,}')
    assert f"{path}: malformed JSON (line 1" in _error(dataset_copy)


def test_echo_time_inherited_from_top_level_sidecar(dataset_copy):
    for k in range(1, 9):
        sidecar = _anat(dataset_copy) / f"sub-01_echo-{k}_part-mag_MEGRE.json"
        te = json.loads(sidecar.read_text())["EchoTime"]
        _edit_sidecar(sidecar, EchoTime=None)
        (dataset_copy / f"echo-{k}_part-mag_MEGRE.json").write_text(json.dumps({"EchoTime": te}))
    subj = _subject(dataset_copy)
    assert not subj.errors and subj.echo_times[1] == pytest.approx(0.009)


def test_chi_in_ppb_is_refused_unless_declared(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_Chimap.nii.gz"
    _rewrite(path, lambda d, img: (d * 1000.0, img.affine))
    assert "this looks like ppb, not ppm" in _error(dataset_copy, validate=True)
    _edit_sidecar(_anat(dataset_copy) / "sub-01_Chimap.json", Units="ppb")
    subj = _subject(dataset_copy)
    report = validate_subject(subj)
    assert report.unit_factors["Chimap"] == pytest.approx(1e-3)
    assert "converted from ppb to ppm" in report.notes[0]
    chi, _ = load_map(subj, "Chimap")
    assert float(np.nanmax(chi)) < 1.0


def test_unknown_units(dataset_copy):
    _edit_sidecar(_anat(dataset_copy) / "sub-01_Chimap.json", Units="furlongs")
    assert "unknown units 'furlongs' for Chimap (expected ppm or ppb)" in \
        _error(dataset_copy, validate=True)


def test_r2star_map_that_is_t2star_in_ms(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_R2starmap.nii.gz"
    _rewrite(path, lambda d, img: (np.where(d > 0, 1000.0 / np.maximum(d, 1e-3), 0),
                                   img.affine))
    assert "is this a T2* map in ms?" in _error(dataset_copy, validate=True)


def test_t2star_map_in_seconds_becomes_r2star_and_ms_is_refused(dataset_copy):
    anat = _anat(dataset_copy)
    src = anat / "sub-01_R2starmap.nii.gz"
    t2s = anat / "sub-01_T2starmap.nii.gz"
    r2s_img = nib.load(src)
    r2s = np.asarray(r2s_img.dataobj, dtype=np.float32)
    nib.save(nib.Nifti1Image(np.where(r2s > 0, 1.0 / np.maximum(r2s, 1e-6), 0), r2s_img.affine),
             t2s)
    subj = _subject(dataset_copy)
    validate_subject(subj)
    r2_from_t2, _ = load_map(subj, "T2starmap")
    inside = r2s > 0
    np.testing.assert_allclose(r2_from_t2[inside], r2s[inside], rtol=1e-4)
    nib.save(nib.Nifti1Image(np.where(r2s > 0, 1000.0 / np.maximum(r2s, 1e-6), 0),
                             r2s_img.affine), t2s)
    assert "median T2* " in _error(dataset_copy, validate=True)
    assert "looks like milliseconds" in _error(dataset_copy, validate=True)


def test_negative_magnitude(dataset_copy):
    path = _anat(dataset_copy) / "sub-01_echo-2_part-mag_MEGRE.nii.gz"
    _rewrite(path, lambda d, img: (d - 500.0, img.affine))
    assert "negative values in a magnitude image" in _error(dataset_copy, validate=True)


def test_participants_problems(dataset_copy):
    tsv = dataset_copy / "participants.tsv"
    table = pd.read_csv(tsv, sep="\t")
    table.drop(columns="participant_id").to_csv(tsv, sep="\t", index=False)
    with pytest.raises(InputError, match="participants.tsv: missing column participant_id"):
        discover(dataset_copy)
    pd.concat([table, table.iloc[[0]]]).to_csv(tsv, sep="\t", index=False)
    with pytest.raises(InputError, match="duplicate participant_id sub-01"):
        discover(dataset_copy)
    bad = table.copy()
    bad.loc[0, "participant_id"] = "sub-../../etc"
    bad.to_csv(tsv, sep="\t", index=False)
    with pytest.raises(InputError, match=r"invalid participant_id 'sub-\.\./\.\./etc'"):
        discover(dataset_copy)
    # A row without folder, and a folder without row: those subjects fail, others go on.
    extra = table.copy()
    extra.loc[1, "participant_id"] = "sub-07"
    extra.to_csv(tsv, sep="\t", index=False)
    ds = discover(dataset_copy)
    errors = {s.key: s.errors[0] for s in ds.failed}
    assert "sub-07 is listed but has no folder sub-07/" in errors["sub-07"]
    assert "sub-02 has a folder but no row" in errors["sub-02"]
    assert [s.key for s in ds.valid] == ["sub-01"]


def test_empty_or_missing_dataset(tmp_path):
    with pytest.raises(InputError, match="BIDS folder not found"):
        discover(tmp_path / "nope")
    with pytest.raises(InputError, match="no sub-<label> folders"):
        discover(tmp_path)


def test_selection_rule_and_ignored_log(dataset_copy):
    anat = _anat(dataset_copy)
    t1 = anat / "sub-01_T1w.nii.gz"
    shutil.copy(t1, anat / "sub-01_acq-fast_run-1_T1w.nii.gz")
    shutil.copy(t1, anat / "sub-01_acq-fast_run-2_T1w.nii.gz")
    t1.rename(anat / "sub-01_acq-mprage_T1w.nii.gz")
    (anat / "sub-01_T1w.json").rename(anat / "sub-01_acq-mprage_T1w.json")
    for ext in (".nii.gz", ".json"):  # maps carry another acq: still matched
        (anat / f"sub-01_Chimap{ext}").rename(anat / f"sub-01_acq-qsm_Chimap{ext}")
    shutil.copy(anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz",
                anat / "sub-01_echo-1_part-phase_MEGRE.nii.gz")
    shutil.copy(anat / "sub-01_R2starmap.nii.gz",
                anat / "sub-01_space-MNI152NLin2009cAsym_R2starmap.nii.gz")
    (anat / "notes.txt").write_text("scan went fine")
    subj = _subject(dataset_copy)
    assert not subj.errors
    assert subj.t1w.name == "sub-01_acq-mprage_T1w.nii.gz"
    assert subj.maps["Chimap"].name == "sub-01_acq-qsm_Chimap.nii.gz"
    assert subj.maps["R2starmap"].name == "sub-01_R2starmap.nii.gz"
    reasons = {p.split("/")[-1]: r for p, r in subj.ignored}
    assert "another T1w was chosen: sub-01_acq-mprage_T1w.nii.gz" in \
        reasons["sub-01_acq-fast_run-2_T1w.nii.gz"]
    assert "part-phase is not used" in reasons["sub-01_echo-1_part-phase_MEGRE.nii.gz"]
    assert "not native" in reasons["sub-01_space-MNI152NLin2009cAsym_R2starmap.nii.gz"]
    assert reasons["notes.txt"] == "not a NIfTI image"
    # An explicit selection picks the run the user wants.
    chosen = _subject(dataset_copy, select={"acq": "fast", "run": "1"})
    assert chosen.t1w.name == "sub-01_acq-fast_run-1_T1w.nii.gz"


def test_sessions_and_registration_fallbacks(dataset_copy):
    sub = dataset_copy / "sub-01"
    (sub / "ses-a").mkdir()
    (sub / "anat").rename(sub / "ses-a" / "anat")
    for path in list((sub / "ses-a" / "anat").iterdir()):
        path.rename(path.with_name(path.name.replace("sub-01_", "sub-01_ses-a_")))
    shutil.copytree(sub / "ses-a", sub / "ses-b")
    for path in list((sub / "ses-b" / "anat").iterdir()):
        path.rename(path.with_name(path.name.replace("ses-a", "ses-b")))
    for path in (sub / "ses-b" / "anat").glob("*T1w*"):
        path.unlink()
    ds = discover(dataset_copy)
    keys = {s.key: s for s in ds.subjects}
    assert set(keys) == {"sub-01_ses-a", "sub-01_ses-b", "sub-02"}
    assert keys["sub-01_ses-a"].registration_kind == "T1w"
    assert keys["sub-01_ses-b"].registration_kind == "MEGRE"
    for path in (sub / "ses-b" / "anat").glob("*MEGRE*"):
        path.unlink()
    only_chi = next(s for s in discover(dataset_copy).subjects if s.key == "sub-01_ses-b")
    assert only_chi.registration_kind == "Chimap" and not only_chi.errors


def test_participant_filter(phantom_dir):
    ds = discover(phantom_dir, participant_label=["sub-02"])
    assert [s.key for s in ds.subjects] == ["sub-02"]
    with pytest.raises(InputError, match="participant\\(s\\) not found: sub-09"):
        discover(phantom_dir, participant_label=["09"])


@pytest.mark.parametrize("value, message", [
    (0, "MagneticFieldStrength 0 T is implausible"),
    (-3, "MagneticFieldStrength -3 T is implausible"),
    (30, "MagneticFieldStrength 30 T is implausible"),
    ("3T", "MagneticFieldStrength must be a number"),
])
def test_implausible_field_strength_names_the_sidecar(dataset_copy, value, message):
    path = _anat(dataset_copy) / "sub-01_Chimap.json"
    meta = json.loads(path.read_text())
    meta["MagneticFieldStrength"] = value
    path.write_text(json.dumps(meta))
    assert f"sub-01_Chimap.json: {message}" in _error(dataset_copy)


@pytest.mark.parametrize("name, fn, message", [
    ("Chimap", lambda d: np.where(d != 0, 0.1, 0.0), "the Chimap is constant"),
    ("Chimap", lambda d: np.full_like(d, 0.05), "the Chimap is constant"),
    ("R2starmap", lambda d: -d, "median R2* -"),
])
def test_constant_or_negative_maps_are_refused(dataset_copy, name, fn, message):
    path = _anat(dataset_copy) / f"sub-01_{name}.nii.gz"
    _rewrite(path, lambda d, img: (fn(d).astype(np.float32), img.affine))
    assert f"sub-01_{name}.nii.gz: {message}" in _error(dataset_copy, validate=True)


def test_field_strength_must_be_positive(phantom_dir):
    subj = _subject(phantom_dir)
    subj.field_strength = None
    with pytest.raises(InputError, match="field strength 0 T: must be positive"):
        validate_subject(subj, field_strength=0.0)


def test_participants_89_plus_is_89_and_marked(dataset_copy):
    tsv = dataset_copy / "participants.tsv"
    lines = tsv.read_text().splitlines()
    head = lines[0].split("\t")
    row = lines[1].split("\t")
    row[head.index("age")] = "89+"
    tsv.write_text("\r\n".join([lines[0], "\t".join(row), *lines[2:]]) + "\r\n")
    ds = discover(dataset_copy)
    assert not ds.failed
    people = ds.participants.set_index("participant_id")
    assert people.loc["sub-01", "age"] == 89 and people.loc["sub-01", "age_note"] == "89+"
    assert pd.isna(people.loc["sub-02", "age_note"])


@pytest.mark.parametrize("extra, message", [
    ("\textra", "row 1 has 5 fields, header has 4"),
    (None, "row 1 has 3 fields, header has 4"),
])
def test_ragged_participants_row(dataset_copy, extra, message):
    tsv = dataset_copy / "participants.tsv"
    lines = tsv.read_text().splitlines()
    assert lines[0].count("\t") == 3
    lines[1] = lines[1] + extra if extra else lines[1].rsplit("\t", 1)[0]
    tsv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=f"participants.tsv: {message}"):
        discover(dataset_copy)


def _into_session(root, sub="01", ses="1"):
    anat = _anat(root, sub)
    target = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
    target.mkdir(parents=True)
    for path in sorted(anat.iterdir()):
        path.rename(target / path.name.replace(f"sub-{sub}_", f"sub-{sub}_ses-{ses}_"))
    anat.rmdir()
    return target


def test_sessions_mixed_with_sessionless_anat_is_an_error(dataset_copy):
    target = _into_session(dataset_copy)
    assert _subject(dataset_copy).key == "sub-01_ses-1"
    shutil.copytree(target, _anat(dataset_copy))
    assert "sub-01: has both session folders (ses-1) and a session-less anat/" in \
        _error(dataset_copy)


def test_invalid_session_label_is_an_error_not_zero_subjects(dataset_copy):
    target = _into_session(dataset_copy)
    target.parent.rename(target.parent.with_name("ses-1_a"))
    assert "ses-1_a: invalid session label 'ses-1_a'" in _error(dataset_copy)


def _drop_field_strength(root):
    for path in root.rglob("sub-*/**/*.json"):
        meta = json.loads(path.read_text())
        if meta.pop("MagneticFieldStrength", None) is not None:
            path.write_text(json.dumps(meta))


def _validate_step(subj, field_strength, tmp_path):
    from types import SimpleNamespace

    from brainiron.steps import validate as step

    out = tmp_path / "validated.json"
    step.main(SimpleNamespace(params=SimpleNamespace(subject=subj.to_dict(),
                                                     field_strength=field_strength),
                              output=[str(out)]))
    return json.loads(out.read_text())


def test_r2star_subject_without_field_strength_is_an_error_naming_the_file(dataset_copy,
                                                                           tmp_path):
    _drop_field_strength(dataset_copy)
    subj = _subject(dataset_copy)
    assert not subj.errors and subj.field_strength is None
    with pytest.raises(InputError) as err:
        validate_subject(subj)
    assert str(err.value) == (
        f"{subj.maps['R2starmap']}: MagneticFieldStrength is not stated in the sidecars; "
        "state it there or set field_strength (tesla) in the configuration")
    with pytest.raises(InputError, match="sub-01_R2starmap.nii.gz: MagneticFieldStrength is"):
        _validate_step(subj, None, tmp_path)
    # The configured B0 is used, and recorded as such, only when the sidecars are silent.
    validated = _validate_step(subj, 3, tmp_path)
    assert validated["field_strength_T"] == 3.0
    assert validated["field_strength_source"] == "config"


def test_megre_only_subject_without_field_strength_names_the_first_echo(dataset_copy):
    _drop_field_strength(dataset_copy)
    for name in ("R2starmap", "Chimap"):
        for path in _anat(dataset_copy).glob(f"sub-01_{name}.*"):
            path.unlink()
    subj = _subject(dataset_copy)
    with pytest.raises(InputError, match="echo-1_part-mag_MEGRE.nii.gz: MagneticFieldStrength"):
        validate_subject(subj)
    validate_subject(subj, field_strength=7.0)


def test_chi_only_subject_needs_no_field_strength(dataset_copy, tmp_path):
    _drop_field_strength(dataset_copy)
    for path in _anat(dataset_copy).glob("sub-01_*"):
        if "R2starmap" in path.name or "MEGRE" in path.name:
            path.unlink()
    subj = _subject(dataset_copy)
    assert not subj.errors and list(subj.maps) == ["Chimap"] and subj.field_strength is None
    validate_subject(subj)
    validated = _validate_step(subj, None, tmp_path)
    assert validated["field_strength_T"] is None
    assert validated["field_strength_source"] == "unstated"


def test_sidecar_field_strength_wins_over_the_configuration(phantom_dir, tmp_path):
    validated = _validate_step(_subject(phantom_dir), 7.0, tmp_path)
    assert validated["field_strength_T"] == 3.0
    assert validated["field_strength_source"] == "sidecar"
