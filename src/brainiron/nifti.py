"""The NIfTI gatekeeper: every image passes :func:`check_nifti` before it is used.

nibabel is lenient by design: it reads a header whose orientation codes are invalid by
resetting them (a guess that can swap left and right), turns a NaN voxel size into 1, decodes
a gzip stream without checking its CRC, and raises low-level errors (``HeaderDataError:
data code 4096 not recognized``, ``MemoryError``) for headers it cannot use. This module reads
the header as stored (NIfTI-1 or NIfTI-2, either byte order), checks every field brainiron
relies on, and reports the first problem as one :class:`~brainiron.errors.InputError` line
naming the file and the field. :func:`check_stream` reads the whole (decompressed) file once:
the gzip CRC and length are verified, and the amount of data must be what the header
declares.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError

__all__ = ["NiftiHeader", "check_nifti", "check_stream"]

#: Real-valued NIfTI data types brainiron reads: code → (name, bits per voxel).
REAL_TYPES = {
    2: ("uint8", 8), 4: ("int16", 16), 8: ("int32", 32), 16: ("float32", 32),
    64: ("float64", 64), 256: ("int8", 8), 512: ("uint16", 16), 768: ("uint32", 32),
    1024: ("int64", 64), 1280: ("uint64", 64),
}
#: Valid NIfTI types brainiron refuses, with the reason.
REFUSED_TYPES = {
    1: "binary (1 bit per voxel)", 32: "complex64", 128: "RGB24", 1536: "float128",
    1792: "complex128", 2048: "complex256", 2304: "RGBA32",
}
#: qform / sform codes: unknown, scanner, aligned, Talairach, MNI, other template (2019).
XFORM_CODES = range(0, 6)
#: Deflate cannot compress better than 1032:1; a larger declared size is impossible.
MAX_GZIP_RATIO = 1032
#: Scale factors outside these bounds are header damage, not a unit.
SCALE_LIMIT = 1e10
_HEADER_SIZES = {348: (nib.Nifti1Header, 352, b"n+1"), 540: (nib.Nifti2Header, 544, b"n+2")}


@dataclass(frozen=True)
class NiftiHeader:
    """What :func:`check_nifti` established about one file.

    Attributes
    ----------
    header : Nifti1Header or Nifti2Header
        The header as stored (no fixes applied).
    version : int
        1 or 2.
    gzipped : bool
    shape : tuple of int
        ``dim[1:dim[0] + 1]``.
    vox_offset : int
        Byte offset of the voxel data in the (decompressed) file.
    data_bytes : int
        Bytes of voxel data the header declares.
    """

    header: nib.Nifti1Header
    version: int
    gzipped: bool
    shape: tuple[int, ...]
    vox_offset: int
    data_bytes: int


def _open(path: Path, gzipped: bool):
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_block(path: Path) -> tuple[bytes, bool]:
    """The first 544 bytes of the (decompressed) file, and whether it is gzip."""
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        if path.name.endswith(".gz") and not gzipped:
            raise InputError(path, "not a readable NIfTI image (named .gz but not "
                                   "gzip-compressed; rename it .nii)")
        if not path.name.endswith(".gz") and gzipped:
            raise InputError(path, "not a readable NIfTI image (gzip-compressed but named "
                                   ".nii; rename it .nii.gz)")
        with _open(path, gzipped) as fh:
            return fh.read(544), gzipped
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"not a readable NIfTI image ({exc})") from None


def _parse(path: Path, block: bytes) -> tuple[nib.Nifti1Header, int, int]:
    """Header class by ``sizeof_hdr`` (either byte order); magic checked."""
    if len(block) < 348:
        raise InputError(path, f"not a readable NIfTI image (only {len(block)} bytes; a "
                               "NIfTI header has 348)")
    for order in ("<", ">"):
        size = int(np.frombuffer(block[:4], dtype=f"{order}i4")[0])
        if size in _HEADER_SIZES:
            klass, min_offset, expected = _HEADER_SIZES[size]
            if len(block) < size:
                raise InputError(path, f"not a readable NIfTI image (header cut short at "
                                       f"{len(block)} bytes)")
            header = klass(binaryblock=block[:size], endianness=order, check=False)
            magic = bytes(header["magic"]).rstrip(b"\0")
            if magic != expected:
                raise InputError(path, f"not a readable NIfTI image (magic {magic!r}, expected "
                                       f"{expected!r} for a single-file NIfTI-{size // 270})")
            return header, 1 if size == 348 else 2, min_offset
    little = int(np.frombuffer(block[:4], dtype="<i4")[0])
    raise InputError(path, f"not a readable NIfTI image (sizeof_hdr {little}; NIfTI-1 has "
                           "348, NIfTI-2 540)")


def _check_dims(path: Path, header) -> tuple[int, ...]:
    dim = [int(d) for d in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InputError(path, f"invalid header: dim[0] = {dim[0]} (the number of dimensions "
                               "must be 1 to 7)")
    shape = tuple(dim[1:dim[0] + 1])
    for k, size in enumerate(shape, start=1):
        if size < 1:
            raise InputError(path, f"invalid header: dim[{k}] = {size} (sizes must be >= 1)")
    return shape


def _check_type(path: Path, header) -> int:
    """Bytes per voxel; complex, RGB and unknown data types refused."""
    code, bitpix = int(header["datatype"]), int(header["bitpix"])
    if code in REFUSED_TYPES:
        raise InputError(path, f"data type {REFUSED_TYPES[code]} (datatype {code}) is not "
                               "supported: brainiron needs real-valued images (a map must "
                               "hold one real number per voxel)")
    if code not in REAL_TYPES:
        raise InputError(path, f"invalid header: datatype {code} is not a NIfTI data type")
    name, bits = REAL_TYPES[code]
    if bitpix != bits:
        raise InputError(path, f"invalid header: bitpix {bitpix} does not match datatype "
                               f"{code} ({name}, {bits} bits)")
    return bits // 8


def _check_scaling(path: Path, header) -> None:
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if np.isnan(slope) or slope == 0:
        return  # no scaling (NIfTI: a slope of 0 means none; nibabel writes NaN)
    if not np.isfinite(slope) or not 1 / SCALE_LIMIT <= abs(slope) <= SCALE_LIMIT:
        raise InputError(path, f"invalid header: scl_slope {slope:g} is not a plausible "
                               "scale factor (header damage, not a unit)")
    if not np.isfinite(inter) or abs(inter) > SCALE_LIMIT:
        raise InputError(path, f"invalid header: scl_inter {inter:g} with scl_slope "
                               f"{slope:g} (the intercept must be a finite, plausible number)")


def _check_orientation(path: Path, header, shape: tuple[int, ...]) -> None:
    codes = {name: int(header[name]) for name in ("qform_code", "sform_code")}
    for name, code in codes.items():
        if code not in XFORM_CODES:
            raise InputError(path, f"invalid header: {name} {code} is not a NIfTI code (0-5); "
                                   "the orientation cannot be trusted (left and right could "
                                   "be swapped)")
    spatial = min(3, len(shape))
    zooms = np.asarray(header["pixdim"][1:spatial + 1], dtype=float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        text = "(" + ", ".join(f"{z:.4g}" for z in zooms) + ")"
        raise InputError(path, f"voxel size must be positive, header says {text} mm "
                               f"(pixdim[1:{spatial + 1}])")
    if codes["qform_code"] == 0 and codes["sform_code"] == 0:
        raise InputError(path, "no orientation in the header (qform and sform codes are 0): "
                               "left and right cannot be told apart")
    if codes["sform_code"] > 0:
        srow = np.stack([header[f"srow_{a}"] for a in "xyz"]).astype(float)
        if not np.all(np.isfinite(srow)):
            raise InputError(path, "the affine (voxel-to-world matrix) contains NaN or Inf; "
                                   "fix the header (srow_x/y/z of the sform)")
    if codes["qform_code"] > 0:
        quat = np.array([header[f"quatern_{a}"] for a in "bcd"], dtype=float)
        offset = np.array([header[f"qoffset_{a}"] for a in "xyz"], dtype=float)
        if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(offset))):
            raise InputError(path, "the affine (voxel-to-world matrix) contains NaN or Inf; "
                                   "fix the header (quatern_b/c/d, qoffset_x/y/z of the qform)")
        if float(quat @ quat) > 1.0 + 1e-5:
            raise InputError(path, f"invalid header: qform quaternion (b, c, d) = "
                                   f"{tuple(round(float(q), 4) for q in quat)} is not a "
                                   "rotation (b² + c² + d² > 1)")


def _available_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 36


def _check_size(path: Path, info: NiftiHeader) -> None:
    file_size = path.stat().st_size
    end = info.vox_offset + info.data_bytes
    voxels = int(np.prod(info.shape, dtype=object))
    gib = voxels * 4 / 2**30
    if voxels * 4 > _available_memory() // 2:
        raise InputError(path, f"header declares {info.shape} = {voxels:,} voxels "
                               f"({gib:.3g} GiB as float32), more than this machine can hold; "
                               "dim[] is wrong")
    if info.gzipped and end > MAX_GZIP_RATIO * file_size + 1024:
        raise InputError(path, f"header declares {end:,} bytes (dim {info.shape}), more than "
                               f"a {file_size:,}-byte gzip file can hold; dim[] or datatype "
                               "is wrong")
    if not info.gzipped and end != file_size:
        _size_mismatch(path, info, file_size - info.vox_offset)


def _size_mismatch(path: Path, info: NiftiHeader, held: int) -> None:
    declared = f"{info.data_bytes:,} bytes of data (dim {info.shape})"
    if held < info.data_bytes:
        raise InputError(path, f"truncated or corrupt image data (the header declares "
                               f"{declared} at offset {info.vox_offset}, the file holds "
                               f"{max(held, 0):,})")
    raise InputError(path, f"the file holds {held:,} bytes of data after offset "
                           f"{info.vox_offset}, the header declares {declared}: dim[], "
                           "datatype or vox_offset is wrong")


def check_nifti(path: str | os.PathLike) -> NiftiHeader:
    """Check a NIfTI file's header (as stored) before anything reads it.

    Checks: single-file NIfTI-1 or NIfTI-2 (``sizeof_hdr``, magic; either byte order; gzip
    or not, matching the name); ``dim``; a real data type whose ``bitpix`` matches;
    ``vox_offset`` past the header; ``scl_slope`` / ``scl_inter`` finite and plausible;
    ``qform_code`` / ``sform_code`` valid and not both 0; voxel sizes (``pixdim``) finite
    and positive; finite sform rows and qform quaternion; the declared data size against
    the memory and the file size. Only the header is read (fast: discovery runs it).

    Parameters
    ----------
    path : path
        ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    NiftiHeader

    Raises
    ------
    InputError
        The first problem, naming the file and the header field.
    """
    path = Path(path)
    block, gzipped = _read_block(path)
    header, version, min_offset = _parse(path, block)
    shape = _check_dims(path, header)
    nbytes = _check_type(path, header)
    offset = float(header["vox_offset"])
    if not np.isfinite(offset) or offset != int(offset) or offset < min_offset:
        raise InputError(path, f"invalid header: vox_offset {offset:g} (the data must start "
                               f"at or after byte {min_offset}, past the header)")
    if block[min_offset - 4:min_offset - 3] not in (b"", b"\0") and offset < min_offset + 16:
        raise InputError(path, f"invalid header: an extension is flagged but vox_offset "
                               f"{offset:g} leaves no room for it")
    _check_scaling(path, header)
    _check_orientation(path, header, shape)
    info = NiftiHeader(header=header, version=version, gzipped=gzipped, shape=shape,
                       vox_offset=int(offset),
                       data_bytes=int(np.prod(shape, dtype=object)) * nbytes)
    _check_size(path, info)
    return info


def check_stream(path: str | os.PathLike, info: NiftiHeader, *, keep: bool = False
                 ) -> bytes | None:
    """Read the whole file once: gzip CRC and length verified, data size as declared.

    Parameters
    ----------
    path : path
    info : NiftiHeader
        From :func:`check_nifti`.
    keep : bool
        Return the decompressed file (header and data) so that the caller reads the voxels
        from memory instead of decompressing the file a second time.

    Returns
    -------
    bytes or None
        The decompressed file when ``keep`` and the file is gzipped, else None.

    Raises
    ------
    InputError
        A damaged or truncated gzip stream, or more / less data than the header declares.
    """
    path = Path(path)
    if not info.gzipped:
        return None  # check_nifti compared the file size already
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        what = "gzip CRC check failed" if "CRC" in str(exc) else str(exc) or type(exc).__name__
        raise InputError(path, f"truncated or corrupt image data ({what}; the compressed "
                               "stream is damaged)") from None
    if len(raw) != info.vox_offset + info.data_bytes:
        _size_mismatch(path, info, len(raw) - info.vox_offset)
    return raw if keep else None
