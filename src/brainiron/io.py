"""File input/output at the edges: NIfTI, TSV and JSON, written atomically; BIDS names.

Every writer first writes to a hidden temporary file in the destination folder and then
renames it over the destination (:func:`os.replace` is atomic on POSIX), so a crash, a full
disk or ``kill -9`` never leaves a half-written output behind under its final name, and a
re-run of the workflow resumes cleanly.

Readers turn every low-level failure (truncated gzip, not a NIfTI, NaN affine, ...) into a
one-line :class:`~brainiron.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .errors import InputError
from .nifti import check_nifti, check_stream

__all__ = [
    "ENTITY_ORDER",
    "atomic_path",
    "build_name",
    "check_affine",
    "check_nifti",
    "load_nifti",
    "parse_name",
    "read_json",
    "read_tsv",
    "save_nifti",
    "write_json",
    "write_text",
    "write_tsv",
]

# Order of entities in a BIDS file name (BIDS specification, appendix "Entity table"),
# plus the derivative entities (space, atlas, from, to, mode, res, label, desc).
ENTITY_ORDER = (
    "sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "mod", "echo", "flip", "inv",
    "mt", "part", "recording", "chunk", "space", "atlas", "roi", "from", "to", "mode",
    "hemi", "res", "den", "label", "desc",
)

_NAME_RE = re.compile(
    r"^(?P<entities>(?:[a-zA-Z]+-[a-zA-Z0-9.+]+_)*)(?P<suffix>[a-zA-Z0-9]+)(?P<ext>\..+)?$"
)


def parse_name(filename: str | os.PathLike) -> tuple[dict[str, str], str, str]:
    """Split a BIDS file name into entities, suffix and extension.

    Parameters
    ----------
    filename : str or path
        A file name or path; only the last component is parsed.

    Returns
    -------
    entities : dict
        Entity key → label, in file order (e.g. ``{"sub": "01", "echo": "2"}``).
    suffix : str
        The BIDS suffix (``"Chimap"``, ``"MEGRE"``, ``"T1w"`` ...).
    ext : str
        The extension including the dot(s) (``".nii.gz"``), or ``""``.

    Raises
    ------
    ValueError
        When the name does not follow ``key-value_..._suffix.ext``.
    """
    name = Path(filename).name
    match = _NAME_RE.match(name)
    if match is None:
        raise ValueError(f"{name}: not a BIDS file name (key-value_..._suffix.ext)")
    entities: dict[str, str] = {}
    for part in match.group("entities").rstrip("_").split("_"):
        if part:
            key, _, value = part.partition("-")
            entities[key] = value
    return entities, match.group("suffix"), match.group("ext") or ""


def build_name(entities: Mapping[str, str | None], suffix: str, ext: str = ".nii.gz") -> str:
    """Assemble a BIDS file name with entities in the specification's order.

    Entities whose value is ``None`` or ``""`` are left out; unknown entities keep their
    given order after the known ones.
    """
    known = [k for k in ENTITY_ORDER if entities.get(k)]
    unknown = [k for k in entities if k not in ENTITY_ORDER and entities.get(k)]
    parts = [f"{k}-{entities[k]}" for k in known + unknown]
    return "_".join([*parts, suffix]) + ext


# --------------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the extension (``.nii.gz`` matters to nibabel) and starts with a
    dot so that it is never mistaken for a finished output. On any exception the temporary file
    is removed and the exception propagates; the destination is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions the umask asks for.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno is not None:
            # A full disk or quota names the output, not the temporary file that is gone.
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def save_nifti(
    data: np.ndarray | nib.spatialimages.SpatialImage,
    path: str | os.PathLike,
    affine: np.ndarray | None = None,
    *,
    dtype: np.dtype | type | None = None,
    header: nib.Nifti1Header | None = None,
    intent: str | None = None,
) -> Path:
    """Write an array (or an image) as NIfTI-1, atomically.

    Parameters
    ----------
    data : ndarray or nibabel image
        Voxel data. An image brings its own affine and header.
    path : path
        Destination (``.nii`` or ``.nii.gz``).
    affine : (4, 4) ndarray, optional
        Voxel → world (mm) matrix; required when ``data`` is an array.
    dtype : dtype, optional
        On-disk data type (default: that of ``data``; float64 is stored as float32).
    header : Nifti1Header, optional
        Header to start from (units, descriptions).
    intent : str, optional
        NIfTI intent code name (e.g. ``"label"`` for segmentations).
    """
    if isinstance(data, nib.spatialimages.SpatialImage):
        img = nib.Nifti1Image(np.asanyarray(data.dataobj), data.affine, header=data.header)
    else:
        if affine is None:
            raise ValueError("save_nifti: an affine is required with a plain array")
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64:
            dtype = np.float32
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        img = nib.Nifti1Image(arr, np.asarray(affine, dtype=float), header=header)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    if intent is not None:
        img.header.set_intent(intent)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


def write_tsv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a DataFrame as a BIDS TSV, atomically: tab-separated, ``n/a`` for every cell
    without a value.

    BIDS allows no empty cell: NaN, None and empty (or blank) strings are all written as
    ``n/a``, here rather than by each caller; :func:`read_tsv` reads them back as missing.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; it is not modified.
    path : path
        Where to write it.
    **kwargs
        More arguments of :meth:`pandas.DataFrame.to_csv` (``index`` is False unless given).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    kwargs.setdefault("index", False)
    df = _blank_to_missing(df)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", na_rep="n/a", float_format="%.6g", **kwargs)
    return Path(path)


def _blank_to_missing(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` in which empty or blank strings of text columns are missing (NaN).

    Examples
    --------
    >>> _blank_to_missing(pd.DataFrame({"a": ["x", "", " "]}))["a"].isna().tolist()
    [False, True, True]
    """
    text = df.select_dtypes(include=["object", "string"]).columns
    blank = {c: df[c].map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
             for c in text}
    blank = {c: b for c, b in blank.items() if b.any()}
    if not blank:
        return df
    df = df.copy()
    for column, where in blank.items():
        df[column] = df[column].mask(where)
    return df


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write an object as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_text(text, path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write text, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# Reading with one-line errors
# --------------------------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON sidecar (UTF-8, a BOM allowed) holding an object.

    Raises
    ------
    InputError
        Naming the file: unreadable, not UTF-8 (latin-1 bytes, UTF-16), malformed JSON (with
        line and column), nested too deeply, or not an object.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(path, "UTF-16 text; BIDS sidecars must be UTF-8 (save it as UTF-8)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at position "
                               f"{exc.start}); BIDS sidecars must be UTF-8") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON (line {exc.lineno}, column {exc.colno}: "
                               f"{exc.msg})") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply to be a sidecar") from None
    if not isinstance(obj, dict):
        raise InputError(path, "JSON sidecar must hold an object ({...}), not a "
                               f"{type(obj).__name__}")
    return obj


def read_tsv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """Read a BIDS TSV (``n/a``, and the empty cells of older files, are missing);
    unreadable files raise :class:`InputError`."""
    kwargs.setdefault("na_values", ["n/a", ""])
    kwargs.setdefault("keep_default_na", False)
    try:
        return pd.read_csv(path, sep="\t", **kwargs)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read as a tab-separated table: {exc}") from None


def load_nifti(
    path: str | os.PathLike,
    *,
    ndim: int | tuple[int, ...] | None = 3,
    load_data: bool = True,
    dtype: type = np.float32,
) -> tuple[np.ndarray | None, nib.Nifti1Image]:
    """Load a NIfTI image, checking what a pipeline would otherwise trip over later.

    Parameters
    ----------
    path : path
        ``.nii`` or ``.nii.gz`` file.
    ndim : int or tuple of int or None
        Accepted number of dimensions (trailing singleton dimensions are dropped first).
    load_data : bool
        Read the voxels (detects truncated files) or only the header.
    dtype : type
        Data type of the returned array (scaling applied).

    Returns
    -------
    data : ndarray or None
        Voxel values (``None`` when ``load_data`` is false).
    img : Nifti1Image
        The image (header and affine).

    Raises
    ------
    InputError
        Anything :func:`~brainiron.nifti.check_nifti` refuses (the header as stored: dim,
        datatype, scaling, orientation codes, voxel sizes, declared size); a damaged gzip
        stream (CRC) or more / less data than declared (:func:`~brainiron.nifti.check_stream`);
        zero, NaN or singular affine; wrong number of dimensions.
    """
    path = Path(path)
    info = check_nifti(path)
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, OSError,
            EOFError, zlib.error, gzip.BadGzipFile, ValueError, TypeError, MemoryError) as exc:
        raise InputError(path, f"not a readable NIfTI image ({_short(exc)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"expected a NIfTI image, found {type(img).__name__}")
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in accepted:
            want = " or ".join(f"{n}D" for n in accepted)
            raise InputError(path, f"expected a {want} image, found {len(shape)}D with shape "
                                   f"{shape}")
    check_affine(img.affine, path, info.header["pixdim"][1:4])
    if not load_data:
        return None, img
    raw = check_stream(path, info, keep=True)
    # The verified bytes are read from memory: the file is decompressed once.
    source = img if raw is None else type(img).from_bytes(raw)
    try:
        data = np.asarray(source.dataobj, dtype=dtype).reshape(shape)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, TypeError) as exc:
        raise InputError(path, f"truncated or corrupt image data ({_short(exc)})") from None
    return data, img


def check_affine(affine: np.ndarray, path=None, zooms=None) -> None:
    """Raise :class:`InputError` for a non-finite, singular or zero-voxel-size affine."""
    affine = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise InputError(path, "the affine (voxel-to-world matrix) contains NaN or Inf; "
                               "fix the header (qform/sform)")
    voxel_sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if zooms is not None and np.any(np.asarray(zooms, dtype=float) <= 0):
        raise InputError(path, f"voxel size must be positive, header says {_mm(zooms)} mm")
    if np.any(voxel_sizes <= 1e-6) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(path, f"the affine is zero or singular (voxel size {_mm(voxel_sizes)} "
                               "mm); fix the header")


def _mm(values) -> str:
    """``(0, 0, 0)`` rather than numpy 2's ``(np.float64(0.0), ...)``."""
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
