import gzip
import struct

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainiron.errors import InputError
from brainiron.io import (
    atomic_path,
    build_name,
    load_nifti,
    parse_name,
    read_json,
    read_tsv,
    save_nifti,
    write_tsv,
)


def test_parse_and_build_names_round_trip():
    ents, suffix, ext = parse_name("/x/sub-01_ses-02_acq-qsm_echo-3_part-mag_MEGRE.nii.gz")
    assert ents == {"sub": "01", "ses": "02", "acq": "qsm", "echo": "3", "part": "mag"}
    assert (suffix, ext) == ("MEGRE", ".nii.gz")
    # Entities come out in the specification's order whatever the input order.
    name = build_name({"desc": "x", "space": "individual", "sub": "01", "ses": ""}, "dseg")
    assert name == "sub-01_space-individual_desc-x_dseg.nii.gz"
    with pytest.raises(ValueError):
        parse_name("not a bids name.nii.gz")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    write_tsv(pd.DataFrame({"a": [1.5, np.nan]}), target)
    assert target.read_text() == "a\n1.5\nn/a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tsv"]


def test_save_and_load_nifti(tmp_path):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    data = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    path = save_nifti(data, tmp_path / "x.nii.gz", affine)
    loaded, img = load_nifti(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, data)
    np.testing.assert_allclose(img.affine, affine)


def _write(path, data, affine=None, zooms=None):
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if zooms is not None:
        img.header.set_zooms(zooms)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("case, message", [
    ("truncated", "truncated or corrupt"),
    ("gzip_not_nifti", "not a readable NIfTI"),
    ("nan_affine", "NaN or Inf"),
    ("zero_affine", "zero or singular"),
    ("zero_voxel", "voxel size must be positive"),
    ("2d", "expected a 3D image, found 2D"),
    ("5d", "expected a 3D image, found 5D"),
    ("missing", "file not found"),
])
def test_load_nifti_errors_name_the_file(tmp_path, case, message):
    path = tmp_path / f"sub-01_{case}.nii.gz"
    if case == "truncated":
        _write(path, np.random.default_rng(0).random((20, 20, 20), dtype=np.float32))
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "gzip_not_nifti":
        path.write_bytes(gzip.compress(b"this is not an image" * 50))
    elif case == "nan_affine":
        # nibabel refuses to build such an image, so patch srow_x in the header bytes.
        img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
        img.set_qform(None, code=0)
        img.header["vox_offset"] = 352
        raw = bytearray(img.header.binaryblock + b"\0" * 4 + img.dataobj.tobytes())
        struct.pack_into("<4f", raw, 280, np.nan, 0.0, 0.0, 0.0)
        path.write_bytes(gzip.compress(bytes(raw)))
    elif case == "zero_affine":
        img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
        img.set_sform(np.diag([0.0, 0.0, 0.0, 1.0]), code=1)
        img.set_qform(None, code=0)
        nib.save(img, path)
    elif case == "zero_voxel":
        img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
        img.header.set_zooms((0.0, 1.0, 1.0))
        img.set_sform(None, code=0)
        img.set_qform(None, code=0)
        nib.save(img, path)
    elif case == "2d":
        _write(path, np.ones((4, 4), np.float32))
    elif case == "5d":
        _write(path, np.ones((4, 4, 4, 2, 2), np.float32))
    with pytest.raises(InputError) as err:
        load_nifti(path)
    text = str(err.value)
    assert message in text
    assert path.name in text
    assert "\n" not in text


def test_read_json_reports_line_of_malformed_sidecar(tmp_path):
    path = tmp_path / "sub-01_T1w.json"
    path.write_text('{\n  "EchoTime": 0.004,\n  oops\n}')
    with pytest.raises(InputError, match=r"sub-01_T1w.json: malformed JSON \(line 3"):
        read_json(path)


@pytest.mark.parametrize("raw, message", [
    ('{"Units": "ppm", "Manufacturer": "Siemens\xe9"}'.encode("latin-1"), "not UTF-8 text"),
    ('{"Units": "ppm"}'.encode("utf-16"), "UTF-16 text"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'[{"Units": "ppm"}]', "must hold an object"),
])
def test_read_json_refuses_bad_sidecars_in_one_line(tmp_path, raw, message):
    path = tmp_path / "sub-01_Chimap.json"
    path.write_bytes(raw)
    with pytest.raises(InputError) as err:
        read_json(path)
    assert message in str(err.value) and path.name in str(err.value)


def test_read_json_accepts_a_utf8_bom_and_crlf(tmp_path):
    path = tmp_path / "sub-01_Chimap.json"
    path.write_bytes(b'\xef\xbb\xbf{\r\n"Units": "ppm", "Institution": "Universit\xc3\xa4t"\r\n}')
    assert read_json(path) == {"Units": "ppm", "Institution": "Universität"}


def test_write_tsv_writes_n_a_for_every_cell_without_a_value(tmp_path):
    """BIDS has no empty cell: NaN, None and empty or blank strings all become ``n/a`` (the
    writer does it, not each caller), and ``read_tsv`` reads them back as missing."""
    table = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "session_id": ["", None],
                          "flag": [" ", "low NCC"], "mean": [np.nan, 0.5]})
    target = write_tsv(table, tmp_path / "t.tsv")
    assert target.read_text().splitlines() == [
        "participant_id\tsession_id\tflag\tmean",
        "sub-01\tn/a\tn/a\tn/a",
        "sub-02\tn/a\tlow NCC\t0.5"]
    assert table["session_id"].tolist() == ["", None]  # the caller's table is untouched
    back = read_tsv(target, dtype={"session_id": str})
    assert back["session_id"].isna().all() and back["flag"].isna().tolist() == [True, False]
    assert back["mean"].isna().tolist() == [True, False]
    # a file of an older version, with empty cells, reads the same
    (tmp_path / "old.tsv").write_text("a\tb\nx\t\n")
    assert read_tsv(tmp_path / "old.tsv")["b"].isna().all()
