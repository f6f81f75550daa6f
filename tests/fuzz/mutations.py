"""Single mutations of a one-subject phantom, each with the outcome brainiron must give.

A :class:`Mutation` changes one thing in a copy of the dataset (a NIfTI header field, an
encoding, the values, a sidecar, the layout, participants.tsv) and says what must happen:
``reject`` (a one-line error that names ``names`` and, when given, says ``says`` and not
``not_says``), ``accept`` (the subject validates; with ``same_values`` the changed image
reads back with the intact file's values and affine), or ``any`` (random byte flips whose
effect cannot be known: never a traceback, and a rejection must still name the file).

Only ``nibabel``, ``numpy`` and the standard library are used here, so the same mutations
run against any version of brainiron (the "before" counts in ``docs/reliability.md``).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

SUB = "sub-01"
MAPS = ("Chimap", "R2starmap")
IMAGES = (*MAPS, "T1w", *(f"echo-{n}_part-mag_MEGRE" for n in (1, 4, 8)))


@dataclass(frozen=True)
class Mutation:
    """One single-mutation case (see the module docstring)."""

    family: str
    name: str
    expect: str  # "reject" | "accept" | "any"
    apply: Callable[[Path, np.random.Generator], None]
    names: str = ""
    says: str = ""
    not_says: tuple[str, ...] = ()
    same_values: str = ""  # image stem to compare with the intact dataset
    check: Callable | None = None  # check(dataset) -> problem or None (accepted cases)

    @property
    def id(self) -> str:
        return f"{self.family}:{self.name}"


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def anat(root: Path) -> Path:
    return root / SUB / "anat"


def image(root: Path, stem: str) -> Path:
    return anat(root) / f"{SUB}_{stem}.nii.gz"


def _raw(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _header(raw: bytes) -> nib.Nifti1Header:
    return nib.Nifti1Header(binaryblock=raw[:348], check=False)


def _write(path: Path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(raw, mtime=0))


def _voxels(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.float32), img


def _save(path: Path, data: np.ndarray, img, dtype=np.float32, klass=nib.Nifti1Image) -> None:
    new = klass(data, img.affine)
    new.set_data_dtype(dtype)
    new.set_qform(img.affine, code=1)
    new.set_sform(img.affine, code=1)
    nib.save(new, path)


# --------------------------------------------------------------------------------------------
# Header fields
# --------------------------------------------------------------------------------------------


def _fields(stem: str, **fields) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        raw = _raw(path)
        header = _header(raw)
        for key, value in fields.items():
            if key.startswith("dim") and key[3:].isdigit():
                header["dim"][int(key[3:])] = value
            elif key.startswith("pixdim") and key[6:].isdigit():
                header["pixdim"][int(key[6:])] = value
            elif key.startswith("dimadd"):
                header["dim"][int(key[6:])] += value
            elif key == "srow_x0":
                header["srow_x"][0] = value
            else:
                header[key] = value
        _write(path, header.binaryblock + raw[348:])
    return apply


def _pad_offset(stem: str, pad: int) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        raw = _raw(path)
        header = _header(raw)
        offset = int(header["vox_offset"]) or 352
        header["vox_offset"] = offset + pad
        _write(path, header.binaryblock + raw[348:offset] + b"\0" * pad + raw[offset:])
    return apply


def _flip_header_byte(stem: str) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        raw = bytearray(_raw(path))
        raw[int(rng.integers(0, 348))] ^= 1 << int(rng.integers(0, 8))
        _write(path, bytes(raw))
    return apply


def header_mutations(stem: str) -> list[Mutation]:
    f = f"{SUB}_{stem}.nii.gz"
    out = []

    def add(name, expect, apply, **kw):
        kw.setdefault("names", f if expect != "accept" else "")
        out.append(Mutation("header", f"{stem}:{name}", expect, apply, **kw))

    for value in (-1, 0, 8, 9, 32767):
        add(f"dim0={value}", "reject", _fields(stem, dim0=value), says="dim[0]")
    add("dim0=4,dim4=1", "accept", _fields(stem, dim0=4, dim4=1), same_values=stem)
    for k in (1, 2, 3):
        for delta in (-1, 1):
            add(f"dim{k}{delta:+d}", "reject", _fields(stem, **{f"dimadd{k}": delta}))
        add(f"dim{k}=0", "reject", _fields(stem, **{f"dim{k}": 0}), says=f"dim[{k}]")
        add(f"dim{k}=-3", "reject", _fields(stem, **{f"dim{k}": -3}), says=f"dim[{k}]")
    add("dims=32767^3", "reject", _fields(stem, dim1=32767, dim2=32767, dim3=32767))
    for code in (0, 999, 1536, 3, 6):
        add(f"datatype={code}", "reject", _fields(stem, datatype=code), says="datatype")
    add("bitpix=wrong", "reject", _fields(stem, bitpix=8), says="bitpix")
    for offset in (100, 351, 353, 400, 10**9):
        add(f"vox_offset={offset}", "reject", _fields(stem, vox_offset=offset))
    add("vox_offset=0", "reject", _fields(stem, vox_offset=0), says="vox_offset")
    add("vox_offset+16 (padded)", "accept", _pad_offset(stem, 16), same_values=stem)
    for value in (1e30, np.inf, -np.inf, 1e-30):
        add(f"scl_slope={value:g}", "reject", _fields(stem, scl_slope=value, scl_inter=0.0),
            says="scl_slope", not_says=("ppb", "T2*", "1/ms"))
    if stem in MAPS:  # float32, stored unscaled (int16 images carry a real scaling)
        for slope in (0.0, np.nan):
            add(f"scl_slope={slope:g}", "accept",
                _fields(stem, scl_slope=slope, scl_inter=7.0), same_values=stem)
        add("scl_slope=1,inter=0", "accept", _fields(stem, scl_slope=1.0, scl_inter=0.0),
            same_values=stem)
    for value in (np.nan, np.inf, 1e30):
        add(f"scl_inter={value:g}", "reject", _fields(stem, scl_slope=1.0, scl_inter=value),
            says="scl_inter", not_says=("ppb", "T2*", "1/ms"))
    for field in ("qform_code", "sform_code"):
        for code in (99, -1, 6, 255, 32767):
            add(f"{field}={code}", "reject", _fields(stem, **{field: code}), says=field,
                not_says=("grid",))
        add(f"{field}=0", "accept", _fields(stem, **{field: 0}), same_values=stem)
    add("qform_code=sform_code=0", "reject", _fields(stem, qform_code=0, sform_code=0),
        says="orientation", not_says=("grid",))
    add("sform_code=2", "accept", _fields(stem, sform_code=2), same_values=stem)
    for k in (1, 2, 3):
        for value in (np.nan, 0.0, -4.0, np.inf):
            add(f"pixdim{k}={value:g}", "reject", _fields(stem, **{f"pixdim{k}": value}),
                says="voxel size", not_says=("grid",))
    add("srow_x[0]=nan", "reject", _fields(stem, srow_x0=np.nan), not_says=("grid",))
    add("quatern_b=nan", "reject", _fields(stem, quatern_b=np.nan), not_says=("grid",))
    add("quatern_b=3", "reject", _fields(stem, quatern_b=3.0, sform_code=0),
        not_says=("grid",))
    for magic in (b"ni1", b"n+3", b"abc"):
        add(f"magic={magic.decode()}", "reject", _fields(stem, magic=magic), says="magic")
    for size in (0, 349, 540):
        add(f"sizeof_hdr={size}", "reject", _fields(stem, sizeof_hdr=size))
    add("descrip", "accept", _fields(stem, descrip=b"reconstructed \xb5 by a tool"),
        same_values=stem)
    add("intent_code=1002", "accept", _fields(stem, intent_code=1002), same_values=stem)
    add("extension flag, no room", "reject", _extension_flag(stem))
    add("random header byte", "any", _flip_header_byte(stem))
    return out


def _extension_flag(stem: str) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        raw = bytearray(_raw(path))
        raw[348] = 1
        _write(path, bytes(raw))
    return apply


# --------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------


def _reencode(stem: str, how: str) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        data, img = _voxels(path)
        if how == "nifti2":
            _save(path, data, img, klass=nib.Nifti2Image)
        elif how == "big-endian":
            raw = _raw(path)
            header = _header(raw)
            offset = int(header["vox_offset"]) or 352
            values = np.frombuffer(raw[offset:], dtype=header.get_data_dtype())
            swapped = header.as_byteswapped(">")
            _write(path, swapped.binaryblock + raw[348:offset]
                   + values.astype(values.dtype.newbyteorder(">")).tobytes())
        elif how == "uncompressed":
            path.with_suffix("").write_bytes(_raw(path))
            path.unlink()
        elif how == "float64":
            _save(path, data, img, dtype=np.float64)
        elif how == "gzip-level-1":
            path.write_bytes(gzip.compress(_raw(path), compresslevel=1))
        elif how == "gzip-two-members":
            raw = _raw(path)
            path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
        elif how == "complex64":
            _save(path, data.astype(np.complex64), img, dtype=np.complex64)
        elif how == "rgb24":
            rgb = np.zeros(data.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
            rgb["R"] = np.clip(np.nan_to_num(data), 0, 255).astype("u1")
            _save(path, rgb, img, dtype=rgb.dtype)
    return apply


def _gzip_body(raw: bytes) -> tuple[int, int]:
    """Start and end of the deflate data of a one-member gzip file."""
    flags, pos = raw[3], 10
    if flags & 4:
        pos += 2 + int.from_bytes(raw[pos:pos + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT
        if flags & bit:
            pos = raw.index(b"\0", pos) + 1
    if flags & 2:
        pos += 2
    return pos, len(raw) - 8


def _break(stem: str, how: str) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        raw = bytearray(path.read_bytes())
        if how == "bit flip in the gzip stream":
            start, end = _gzip_body(bytes(raw))
            raw[int(rng.integers(start + (end - start) // 4, end))] ^= 1 << int(rng.integers(8))
        elif how == "truncated":
            raw = raw[: int(len(raw) * rng.uniform(0.3, 0.95))]
        elif how == "plain NIfTI named .gz":
            raw = bytearray(gzip.decompress(bytes(raw)))
        elif how == "empty":
            raw = bytearray()
        elif how == "random bytes":
            raw = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        path.write_bytes(bytes(raw))
        if how == "gzip named .nii":
            path.rename(path.with_suffix(""))
    return apply


def encoding_mutations(stem: str) -> list[Mutation]:
    f = f"{SUB}_{stem}.nii"
    out = [Mutation("encoding", f"{stem}:{how}", "accept", _reencode(stem, how),
                    same_values=stem)
           for how in ("nifti2", "big-endian", "uncompressed", "float64", "gzip-level-1",
                       "gzip-two-members")]
    out += [Mutation("encoding", f"{stem}:{how}", "reject", _reencode(stem, how), names=f,
                     says="real-valued") for how in ("complex64", "rgb24")]
    out += [Mutation("encoding", f"{stem}:{how}", "reject", _break(stem, how), names=f)
            for how in ("bit flip in the gzip stream", "truncated", "plain NIfTI named .gz",
                        "empty", "random bytes", "gzip named .nii")]
    return out
