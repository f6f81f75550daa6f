"""The NIfTI gatekeeper (brainiron.nifti via io.load_nifti): one line naming the file and the
header field for every damaged header; valid NIfTI-1 / NIfTI-2 variants read identically."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from brainiron.errors import InputError
from brainiron.io import check_nifti, load_nifti

AFFINE = np.array([[-2.0, 0, 0, 40], [0, 2, 0, -50], [0, 0, 3, -30], [0, 0, 0, 1]])
DATA = np.random.default_rng(3).normal(0.05, 0.02, (6, 7, 5)).astype(np.float32)


def _raw(header, data=DATA, gz=True):
    block = header.binaryblock + b"\0" * 4 + data.astype(header.get_data_dtype()).tobytes("F")
    return gzip.compress(block, mtime=0) if gz else block


def _header(**fields):
    img = nib.Nifti1Image(DATA, AFFINE)
    header = img.header.copy()
    header["vox_offset"] = 352
    for key, value in fields.items():
        header[key] = value
    return header


@pytest.mark.parametrize("fields, message", [
    ({"dim": [-1, 6, 7, 5, 1, 1, 1, 1]}, "dim[0] = -1"),
    ({"dim": [9, 6, 7, 5, 1, 1, 1, 1]}, "dim[0] = 9"),
    ({"dim": [3, 0, 7, 5, 1, 1, 1, 1]}, "dim[1] = 0"),
    ({"dim": [3, 5, 7, 5, 1, 1, 1, 1]}, "dim[], datatype or vox_offset is wrong"),
    ({"dim": [3, 32767, 32767, 32767, 1, 1, 1, 1]}, "more than this machine can hold"),
    ({"datatype": 0}, "datatype 0 is not a NIfTI data type"),
    ({"datatype": 32, "bitpix": 64}, "complex64"),
    ({"datatype": 128, "bitpix": 24}, "RGB24"),
    ({"bitpix": 16}, "bitpix 16 does not match datatype 16"),
    ({"vox_offset": 351}, "vox_offset 351"),
    ({"scl_slope": 1e30}, "scl_slope 1e+30"),
    ({"scl_slope": 1.0, "scl_inter": np.nan}, "scl_inter nan"),
    ({"scl_slope": np.inf}, "scl_slope inf"),
    ({"qform_code": 99}, "qform_code 99 is not a NIfTI code"),
    ({"sform_code": 99}, "sform_code 99 is not a NIfTI code"),
    ({"qform_code": 0, "sform_code": 0}, "no orientation in the header"),
    ({"pixdim": [1, np.nan, 2, 3, 1, 1, 1, 1]}, "voxel size must be positive"),
    ({"magic": b"ni1"}, "magic"),
    ({"sizeof_hdr": 0}, "sizeof_hdr 0"),
])
def test_damaged_header_is_one_line_naming_the_field(tmp_path, fields, message):
    path = tmp_path / "sub-01_Chimap.nii.gz"
    path.write_bytes(_raw(_header(**fields)))
    with pytest.raises(InputError) as err:
        load_nifti(path)
    text = str(err.value)
    assert message in text and path.name in text and "\n" not in text


def test_flipped_bit_in_the_gzip_stream_is_caught_by_the_crc(tmp_path):
    path = tmp_path / "sub-01_Chimap.nii.gz"
    raw = bytearray(_raw(_header()))
    raw[len(raw) - 40] ^= 0x10  # inside the deflate data, near the end
    path.write_bytes(bytes(raw))
    check_nifti(path)  # the header alone is fine: discovery passes
    with pytest.raises(InputError, match="truncated or corrupt image data"):
        load_nifti(path)


@pytest.mark.parametrize("variant", ["nifti2", "big-endian", "plain", "int16-scaled", "4d-1",
                                     "qform-only", "sform-only"])
def test_valid_variants_read_the_same_values(tmp_path, variant):
    path = tmp_path / ("sub-01_Chimap.nii" if variant == "plain" else "sub-01_Chimap.nii.gz")
    data = DATA
    if variant == "nifti2":
        nib.save(nib.Nifti2Image(DATA, AFFINE), path)
    elif variant == "big-endian":
        header = _header().as_byteswapped(">")
        path.write_bytes(_raw(header))
    elif variant == "int16-scaled":
        img = nib.Nifti1Image(DATA, AFFINE)
        img.set_data_dtype(np.int16)
        nib.save(img, path)
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    elif variant == "4d-1":
        nib.save(nib.Nifti1Image(DATA[..., None], AFFINE), path)
    else:
        img = nib.Nifti1Image(DATA, AFFINE)
        if variant == "qform-only":
            img.set_qform(AFFINE, code=1)
            img.set_sform(None, code=0)
        elif variant == "sform-only":
            img.set_qform(None, code=0)
        nib.save(img, path)
    loaded, img = load_nifti(path)
    np.testing.assert_array_equal(loaded, data)
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)
