"""Find, select and validate a subject's images in a BIDS dataset.

Discovery (:func:`discover`) reads only file names, sidecars and NIfTI headers, so it is fast
enough to run when the workflow is planned; :func:`validate_subject` then reads the voxels and
checks values and units. Both report problems as one-line
:class:`~brainiron.errors.InputError` messages that name the file.

What brainiron looks for, per subject (and session), in ``sub-<label>[/ses-<label>]/anat/``:

========================  ===========================================  ==================
suffix                    what                                         units
========================  ===========================================  ==================
``Chimap``                magnetic susceptibility map                  ppm
``R2starmap``             R2* map                                      1/s
``T2starmap``             T2* map (turned into R2* = 1/T2*)             s
``MEGRE`` (``echo-<n>``,  multi-echo GRE magnitude, one file per echo  sidecar EchoTime
``part-mag`` or no part)                                               in s
``T1w``                   anatomical image for registration            —
========================  ===========================================  ==================

Selection rule when one kind has several candidates (``acq-``, ``rec-``, ``run-`` ...):
images with a ``space-`` entity other than the subject's own are not native and are skipped;
the ``select`` filter given by the user (e.g. ``{"acq": "qsm"}``) keeps only matching files;
among the rest the candidate with the fewest entities wins, ties broken by the highest
``run`` and then by name. Nothing is skipped silently: every file not used is listed in
``Dataset.ignored`` (and the workflow's ``ignored.tsv``) with the reason. Entities never need
to agree between kinds: a ``T1w`` with ``acq-mprage`` registers a ``Chimap`` with ``acq-qsm``.

Registration image rule: the T1w if present, else the first-echo magnitude, else the χ map,
else the R2* map (see :attr:`Subject.registration_kind`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .io import load_nifti, parse_name, read_json, read_tsv

__all__ = [
    "MAP_SUFFIXES",
    "MAP_UNITS",
    "Dataset",
    "Subject",
    "ValidatedSubject",
    "discover",
    "grids_match",
    "load_map",
    "validate_subject",
]

MAP_SUFFIXES = ("Chimap", "R2starmap", "T2starmap")
#: Canonical units of each quantitative map brainiron reports.
MAP_UNITS = {"Chimap": "ppm", "R2starmap": "1/s", "T2starmap": "s"}
# Declared units we understand, as the factor to the canonical unit.
_UNIT_FACTORS = {
    "Chimap": {"ppm": 1.0, "ppb": 1e-3},
    "R2starmap": {"1/s": 1.0, "s-1": 1.0, "s^-1": 1.0, "hz": 1.0, "1/ms": 1e3},
    "T2starmap": {"s": 1.0, "ms": 1e-3},
}
_LABEL_RE = re.compile(r"^[a-zA-Z0-9]+$")
_NIFTI_RE = re.compile(r"\.nii(\.gz)?$")
_USED_SUFFIXES = {"T1w", "MEGRE", *MAP_SUFFIXES}


@dataclass
class Subject:
    """The images brainiron uses for one subject (and session).

    Attributes
    ----------
    subject, session : str
        BIDS labels without prefix (``"01"``; session ``""`` when the dataset has none).
    t1w : Path or None
        Anatomical image.
    maps : dict
        ``{"Chimap": path, "R2starmap": path, "T2starmap": path}`` for those present.
    megre : list of Path
        Magnitude echoes in echo order.
    echo_times : list of float
        Echo times in s, one per echo.
    field_strength : float or None
        ``MagneticFieldStrength`` (T) from the sidecars.
    units : dict
        Declared ``Units`` of each map from its sidecar (``""`` when undeclared).
    ignored : list of (str, str)
        Files of this subject not used, with the reason.
    errors : list of str
        One-line problems found at discovery; a subject with errors is not processed.
    """

    subject: str
    session: str = ""
    t1w: Path | None = None
    maps: dict[str, Path] = field(default_factory=dict)
    megre: list[Path] = field(default_factory=list)
    echo_times: list[float] = field(default_factory=list)
    field_strength: float | None = None
    units: dict[str, str] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def participant_id(self) -> str:
        return f"sub-{self.subject}"

    @property
    def session_id(self) -> str:
        return f"ses-{self.session}" if self.session else ""

    @property
    def key(self) -> str:
        """``sub-01`` or ``sub-01_ses-02``: the unit the workflow processes."""
        return "_".join(p for p in (self.participant_id, self.session_id) if p)

    @property
    def entities(self) -> dict[str, str]:
        return {"sub": self.subject, "ses": self.session}

    @property
    def registration_kind(self) -> str | None:
        """``T1w``, ``MEGRE`` (first echo), ``Chimap`` or ``R2starmap``: what gets registered."""
        if self.t1w is not None:
            return "T1w"
        if self.megre:
            return "MEGRE"
        for kind in ("Chimap", "R2starmap"):
            if kind in self.maps:
                return kind
        return None

    @property
    def registration_image(self) -> Path | None:
        kind = self.registration_kind
        return {"T1w": self.t1w, "MEGRE": self.megre[0] if self.megre else None}.get(
            kind, self.maps.get(kind))

    @property
    def quantification_reference(self) -> Path | None:
        """The image whose grid the maps (and hence the native labels) live on."""
        for kind in MAP_SUFFIXES:
            if kind in self.maps:
                return self.maps[kind]
        return self.megre[0] if self.megre else None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["t1w"] = str(self.t1w) if self.t1w else None
        out["maps"] = {k: str(v) for k, v in self.maps.items()}
        out["megre"] = [str(p) for p in self.megre]
        out["key"] = self.key
        out["registration_kind"] = self.registration_kind
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Subject:
        return cls(
            subject=d["subject"], session=d.get("session", ""),
            t1w=Path(d["t1w"]) if d.get("t1w") else None,
            maps={k: Path(v) for k, v in d.get("maps", {}).items()},
            megre=[Path(p) for p in d.get("megre", [])],
            echo_times=list(d.get("echo_times", [])),
            field_strength=d.get("field_strength"), units=dict(d.get("units", {})),
            ignored=[tuple(x) for x in d.get("ignored", [])], errors=list(d.get("errors", [])),
        )


@dataclass
class Dataset:
    """A discovered BIDS dataset.

    Attributes
    ----------
    root : Path
    subjects : list of Subject
        Every subject (× session) found; those with ``errors`` are not processed.
    participants : DataFrame or None
        ``participants.tsv`` (``participant_id`` and whatever else it has).
    ignored : list of (str, str)
        Dataset-level files and folders not used, with the reason.
    """

    root: Path
    subjects: list[Subject]
    participants: pd.DataFrame | None
    ignored: list[tuple[str, str]] = field(default_factory=list)

    @property
    def valid(self) -> list[Subject]:
        return [s for s in self.subjects if not s.errors]

    @property
    def failed(self) -> list[Subject]:
        return [s for s in self.subjects if s.errors]

    def ignored_table(self) -> pd.DataFrame:
        rows = list(self.ignored) + [x for s in self.subjects for x in s.ignored]
        return pd.DataFrame(rows, columns=["path", "reason"])


# --------------------------------------------------------------------------------------------
# Sidecars with BIDS inheritance
# --------------------------------------------------------------------------------------------


def _sidecar(nifti: Path, root: Path) -> tuple[dict, list[Path]]:
    """Merge the JSON sidecars that apply to ``nifti`` (BIDS inheritance principle).

    Sidecars higher in the tree apply when their entities are a subset of the image's and
    the suffix matches; deeper (more specific) ones override. Returns the merged metadata and
    the sidecar files used (most specific last).
    """
    entities, suffix, _ = parse_name(nifti)
    chain: list[Path] = []
    folder = nifti.parent
    folders = []
    while True:
        folders.append(folder)
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    for folder in reversed(folders):
        for candidate in sorted(folder.glob(f"*{suffix}.json")):
            try:
                ents, suf, _ = parse_name(candidate)
            except ValueError:
                continue
            if suf == suffix and all(entities.get(k) == v for k, v in ents.items()):
                chain.append(candidate)
    meta: dict = {}
    # Fewer entities first (more general), the image's own sidecar last.
    for path in sorted(chain, key=lambda p: (len(parse_name(p)[0]), len(p.parts))):
        meta.update(read_json(path))
    return meta, chain


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def _choose(candidates: list[Path], kind: str, select: Mapping[str, str]
            ) -> tuple[Path | None, list[tuple[str, str]]]:
    """Pick one file of a kind by the documented rule; list the others as ignored."""
    ignored = []
    keep = []
    for path in candidates:
        ents = parse_name(path)[0]
        if ents.get("space") not in (None, "individual", "orig", "scanner"):
            ignored.append((str(path), f"{kind} in space-{ents['space']}, not native"))
        elif any(ents.get(k) != v for k, v in select.items()):
            ignored.append((str(path), f"does not match the selection {dict(select)}"))
        else:
            keep.append(path)
    if not keep:
        return None, ignored

    def rank(path: Path):
        ents = parse_name(path)[0]
        run = ents.get("run", "0")
        return (len(ents), -int(run) if run.isdigit() else 0, path.name)

    keep.sort(key=rank)
    for other in keep[1:]:
        ignored.append((str(other), f"another {kind} was chosen: {keep[0].name} (rule: fewest "
                                    "entities, then highest run, then name)"))
    return keep[0], ignored


def _megre_series(files: list[Path], select: Mapping[str, str]
                  ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Group echoes into series (entities other than echo/part) and pick one series."""
    ignored = []
    series: dict[tuple, list[Path]] = defaultdict(list)
    for path in files:
        ents = parse_name(path)[0]
        part = ents.get("part", "mag")
        if part != "mag":
            ignored.append((str(path), f"part-{part} is not used (brainiron needs the magnitude; "
                                       "QSM reconstruction is out of scope)"))
            continue
        key = tuple(sorted((k, v) for k, v in ents.items() if k not in ("echo", "part")))
        series[key].append(path)
    if not series:
        return [], ignored
    firsts = {min(paths, key=lambda p: p.name): key for key, paths in series.items()}
    chosen, more = _choose(list(firsts), "MEGRE series", select)
    ignored += [(str(p), reason) for p, reason in more]
    for first, key in firsts.items():
        if first != chosen:
            ignored += [(str(p), "echo of a MEGRE series that was not chosen")
                        for p in series[key] if p != first]
    if chosen is None:
        return [], ignored
    return series[firsts[chosen]], ignored


def _check_echoes(echoes: list[Path], root: Path) -> tuple[list[Path], list[float], dict]:
    """Order echoes, read EchoTime from the sidecars and check them; raise InputError."""
    numbered = []
    for path in echoes:
        echo = parse_name(path)[0].get("echo")
        if echo is None or not echo.isdigit():
            raise InputError(path, "MEGRE file without a numeric echo-<n> entity")
        numbered.append((int(echo), path))
    numbered.sort()
    numbers = [n for n, _ in numbered]
    expected = list(range(1, len(numbered) + 1))
    if numbers != expected:
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        what = (f"echo-{', echo-'.join(map(str, missing))} missing" if missing
                else "duplicate echo numbers")
        raise InputError(numbered[0][1].parent,
                         f"{what} in the MEGRE series (found echoes {numbers})")
    paths = [p for _, p in numbered]
    tes = []
    meta0: dict = {}
    for n, path in numbered:
        meta, chain = _sidecar(path, root)
        where = chain[-1] if chain else path
        if n == 1:
            meta0 = meta
        te = meta.get("EchoTime")
        if te is None:
            raise InputError(where, "EchoTime missing from the JSON sidecar (needed for R2*; "
                                    "BIDS gives it in seconds)")
        if isinstance(te, list | dict) or isinstance(te, bool):
            raise InputError(where, f"EchoTime must be a number, found {te!r}")
        try:
            te = float(te)
        except (TypeError, ValueError):
            raise InputError(where, f"EchoTime must be a number, found {te!r}") from None
        if not np.isfinite(te) or te <= 0:
            raise InputError(where, f"EchoTime must be positive, found {te}")
        if te > 1.0:
            raise InputError(where, f"EchoTime {te:g} looks like milliseconds; BIDS requires "
                                    f"seconds (e.g. {te / 1000:g})")
        tes.append(te)
    diffs = np.diff(tes)
    if np.any(diffs <= 0):
        k = int(np.argmax(diffs <= 0))
        raise InputError(paths[k + 1], f"echo times do not increase with the echo number "
                                       f"(echo-{k + 1}: {tes[k]:g} s, echo-{k + 2}: "
                                       f"{tes[k + 1]:g} s)")
    return paths, tes, meta0


def grids_match(img_a, img_b, atol: float = 1e-3) -> bool:
    """True when two images have the same 3D shape and voxel-to-world affine (to ``atol`` mm)."""
    return (tuple(img_a.shape[:3]) == tuple(img_b.shape[:3])
            and np.allclose(img_a.affine, img_b.affine, atol=atol))


def _grid_text(img) -> str:
    zooms = tuple(round(float(z), 3) for z in img.header.get_zooms()[:3])
    return f"shape {tuple(int(s) for s in img.shape[:3])}, voxel {zooms} mm"


def _discover_subject(anat: Path, root: Path, subject: str, session: str,
                      select: Mapping[str, str], t1w_grid: str) -> Subject:
    subj = Subject(subject=subject, session=session)
    by_suffix: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(anat.iterdir()) if anat.is_dir() else []:
        if path.suffix == ".json" or path.name.startswith("."):
            continue
        if not _NIFTI_RE.search(path.name):
            subj.ignored.append((str(path), "not a NIfTI image"))
            continue
        try:
            ents, suffix, _ = parse_name(path)
        except ValueError:
            subj.ignored.append((str(path), "not a BIDS file name"))
            continue
        if ents.get("sub") != subject or ents.get("ses", "") != session:
            subj.ignored.append((str(path), "sub-/ses- entities do not match its folder"))
            continue
        if suffix not in _USED_SUFFIXES:
            subj.ignored.append((str(path), f"suffix {suffix} is not used by brainiron"))
            continue
        by_suffix[suffix].append(path)

    where = anat if anat.is_dir() else anat.parent
    try:
        subj.t1w, ign = _choose(by_suffix.get("T1w", []), "T1w", select)
        subj.ignored += ign
        for kind in MAP_SUFFIXES:
            chosen, ign = _choose(by_suffix.get(kind, []), kind, select)
            subj.ignored += ign
            if chosen is not None:
                subj.maps[kind] = chosen
        echoes, ign = _megre_series(by_suffix.get("MEGRE", []), select)
        subj.ignored += ign
        megre_meta: dict = {}
        if echoes:
            subj.megre, subj.echo_times, megre_meta = _check_echoes(echoes, root)
        if subj.registration_kind is None:
            raise InputError(where, "no usable image: need a Chimap, R2starmap, T2starmap or "
                                    "MEGRE magnitude (and ideally a T1w)")
        if not subj.maps and len(subj.megre) < 2:
            raise InputError(where, "nothing to quantify: no Chimap / R2starmap / T2starmap, "
                                    "and R2* needs at least 2 MEGRE echoes")

        # Headers: readable, 3D, sane affine; maps and echoes share one grid.
        metas = [megre_meta]
        headers = {}
        for kind, path in subj.maps.items():
            headers[kind] = load_nifti(path, load_data=False)[1]
            meta, _ = _sidecar(path, root)
            metas.append(meta)
            subj.units[kind] = str(meta.get("Units", "")).strip()
        for k, path in enumerate(subj.megre, start=1):
            headers[f"MEGRE echo-{k}"] = load_nifti(path, load_data=False)[1]
        if subj.t1w is not None:
            headers["T1w"] = load_nifti(subj.t1w, load_data=False)[1]
            metas.append(_sidecar(subj.t1w, root)[0])
        grid_names = [n for n in headers if n != "T1w"]
        ref_name = grid_names[0]
        paths = {**subj.maps, **{f"MEGRE echo-{k}": p for k, p in enumerate(subj.megre, 1)}}
        if subj.t1w is not None:
            paths["T1w"] = subj.t1w
        for name in grid_names[1:] + (["T1w"] if "T1w" in headers and t1w_grid == "same"
                                      else []):
            if not grids_match(headers[name], headers[ref_name]):
                raise InputError(paths[name], (
                    f"grid ({_grid_text(headers[name])}) differs from "
                    f"{paths[ref_name].name} ({_grid_text(headers[ref_name])}); images of one "
                    "subject must share one grid" + (
                        " (or set registration.t1w_grid: world to use scanner coordinates)"
                        if name == "T1w" else "")))
        strengths = {float(m["MagneticFieldStrength"]) for m in metas
                     if isinstance(m.get("MagneticFieldStrength"), int | float)}
        if len(strengths) > 1:
            raise InputError(where, f"sidecars disagree on MagneticFieldStrength "
                                    f"({sorted(strengths)} T)")
        subj.field_strength = strengths.pop() if strengths else None
    except InputError as exc:
        subj.errors.append(str(exc))
    return subj


def _read_participants(root: Path) -> pd.DataFrame | None:
    path = root / "participants.tsv"
    if not path.exists():
        return None
    table = read_tsv(path, dtype=str)
    if "participant_id" not in table.columns:
        raise InputError(path, "missing column participant_id (columns found: "
                               f"{', '.join(map(str, table.columns)) or 'none'})")
    ids = table["participant_id"].fillna("")
    bad = [v for v in ids if not (v.startswith("sub-") and _LABEL_RE.match(v[4:]))]
    if bad:
        raise InputError(path, f"invalid participant_id {bad[0]!r}: must be sub-<label> with "
                               "letters and digits only")
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise InputError(path, f"duplicate participant_id {', '.join(dup)}")
    if "age" in table.columns:
        age = pd.to_numeric(table["age"], errors="coerce")
        wrong = table.loc[age.isna() & table["age"].notna(), "age"].tolist()
        if wrong:
            raise InputError(path, f"column age must be numeric (years), found {wrong[0]!r}")
        table["age"] = age
    return table


def discover(bids_dir: str | Path, participant_label: Iterable[str] | None = None,
             select: Mapping[str, str] | None = None, t1w_grid: str = "same") -> Dataset:
    """Discover every subject (and session) of a BIDS dataset and check file-level facts.

    Parameters
    ----------
    bids_dir : path
        Root of a BIDS dataset.
    participant_label : iterable of str, optional
        Only these subjects (with or without ``sub-``).
    select : mapping, optional
        Entity filter applied when choosing files, e.g. ``{"acq": "qsm"}``.
    t1w_grid : {"same", "world"}
        ``same``: the T1w must share the maps' grid. ``world``: a T1w on another grid is
        used through scanner (world) coordinates, i.e. assumed not to have moved.

    Returns
    -------
    Dataset
        Subjects with their chosen files; subjects with problems carry ``errors``.

    Raises
    ------
    InputError
        For dataset-level problems: missing folder, no subjects, a broken participants.tsv.
    """
    root = Path(bids_dir).resolve()
    if not root.is_dir():
        raise InputError(bids_dir, "BIDS folder not found")
    select = dict(select or {})
    participants = _read_participants(root)
    ignored: list[tuple[str, str]] = []
    folders = []
    for path in sorted(root.glob("sub-*")):
        label = path.name[4:]
        if not path.is_dir():
            ignored.append((str(path), "not a folder"))
        elif not _LABEL_RE.match(label):
            ignored.append((str(path), "invalid subject label (letters and digits only)"))
        else:
            folders.append(path)
    if not folders:
        raise InputError(root, "no sub-<label> folders: not a BIDS dataset (or empty)")
    wanted = None
    if participant_label:
        wanted = {p.removeprefix("sub-") for p in participant_label}
        unknown = wanted - {f.name[4:] for f in folders}
        if unknown:
            raise InputError(root, f"participant(s) not found: "
                                   f"{', '.join(sorted('sub-' + u for u in unknown))}")
    subjects: list[Subject] = []
    listed = set(participants["participant_id"]) if participants is not None else None
    for folder in folders:
        label = folder.name[4:]
        if wanted is not None and label not in wanted:
            continue
        sessions = sorted(p for p in folder.glob("ses-*") if p.is_dir())
        units = [(s.name[4:], s / "anat") for s in sessions] or [("", folder / "anat")]
        for session, anat in units:
            if session and not _LABEL_RE.match(session):
                ignored.append((str(anat.parent), "invalid session label"))
                continue
            subj = _discover_subject(anat, root, label, session, select, t1w_grid)
            if listed is not None and folder.name not in listed:
                subj.errors.insert(0, str(InputError(
                    root / "participants.tsv",
                    f"{folder.name} has a folder but no row; add it to participants.tsv")))
            subjects.append(subj)
    if listed is not None:
        on_disk = {f.name for f in folders}
        for pid in sorted(listed - on_disk):
            if wanted is None or pid[4:] in wanted:
                missing = Subject(subject=pid[4:])
                missing.errors.append(str(InputError(
                    root / "participants.tsv", f"{pid} is listed but has no folder {pid}/")))
                subjects.append(missing)
    return Dataset(root=root, subjects=subjects, participants=participants, ignored=ignored)


# --------------------------------------------------------------------------------------------
# Validation of values and units
# --------------------------------------------------------------------------------------------


@dataclass
class ValidatedSubject:
    """Facts established by :func:`validate_subject` (JSON-serialisable via ``to_dict``)."""

    key: str
    unit_factors: dict[str, float]
    shape: tuple[int, int, int]
    affine: list[list[float]]
    voxel_size_mm: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _finite_checks(data: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Raise for all-NaN / Inf / all-zero images; return the finite non-zero values."""
    if np.isinf(data).any():
        raise InputError(path, f"{what} contains {int(np.isinf(data).sum())} infinite values; "
                               "replace them with NaN or 0 outside the brain")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError(path, f"{what} is all NaN")
    values = data[finite & (data != 0)]
    if values.size == 0:
        raise InputError(path, f"{what} is all zero")
    return values


def _declared_factor(kind: str, declared: str, path: Path) -> float:
    if not declared:
        return 1.0
    factors = _UNIT_FACTORS[kind]
    key = declared.strip().lower().replace(" ", "")
    if key in factors:
        return factors[key]
    if kind == "R2starmap" and key in ("ms", "s"):
        raise InputError(path, f"Units {declared!r}: this is a T2* map, not R2* (1/s); name it "
                               "_T2starmap (in s)")
    raise InputError(path, f"unknown units {declared!r} for {kind} (expected "
                           f"{' or '.join(factors)})")


def load_map(subject: Subject, kind: str, factor: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Load a subject's map in canonical units (χ ppm, R2* 1/s; T2* becomes R2*).

    Parameters
    ----------
    subject : Subject
    kind : {"Chimap", "R2starmap", "T2starmap"}
    factor : float, optional
        Unit factor established by :func:`validate_subject` (declared units).

    Returns
    -------
    data : ndarray, float32
        Values in ppm (χ) or 1/s (R2*, also for a T2* map: R2* = 1/T2*, NaN where T2* <= 0).
    affine : (4, 4) ndarray
    """
    path = subject.maps[kind]
    data, img = load_nifti(path)
    if factor is None:
        factor = _declared_factor(kind, subject.units.get(kind, ""), path)
    data *= np.float32(factor)
    if kind == "T2starmap":
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(data > 0, 1.0 / data, np.nan).astype(np.float32)
    return data, img.affine


def validate_subject(subject: Subject, field_strength: float = 3.0) -> ValidatedSubject:
    """Read a subject's images and check their values and units.

    Checks: readable voxels (truncated files), no Inf, not all NaN, not all zero; χ maps in
    ppm (not ppb); R2* maps in 1/s (not a T2* map in ms); T2* maps in s (not ms); magnitude
    echoes non-negative and of one grid.

    Parameters
    ----------
    subject : Subject
        From :func:`discover`, without errors.
    field_strength : float
        B0 in tesla when the sidecars do not say (used by the R2* plausibility check).

    Returns
    -------
    ValidatedSubject

    Raises
    ------
    InputError
        The first problem found, naming the file.
    """
    if subject.errors:
        raise InputError(None, subject.errors[0])
    b0 = subject.field_strength or field_strength
    factors: dict[str, float] = {}
    notes: list[str] = []
    ref_img = None
    for kind, path in subject.maps.items():
        data, img = load_nifti(path)
        ref_img = ref_img or img
        values = _finite_checks(data, path, f"the {kind}")
        factor = _declared_factor(kind, subject.units.get(kind, ""), path)
        values = values * factor
        factors[kind] = factor
        if factor != 1.0:
            notes.append(f"{path.name}: converted from {subject.units[kind]} to "
                         f"{MAP_UNITS[kind]} (x{factor:g})")
        big = float(np.percentile(np.abs(values), 99.5))
        median = float(np.median(values[values > 0])) if np.any(values > 0) else 0.0
        if kind == "Chimap" and big > 5.0:
            raise InputError(path, f"chi values reach {big:.3g} (99.5th percentile of |chi|): "
                                   "this looks like ppb, not ppm; BIDS Chimap is in ppm "
                                   "(divide by 1000, or declare \"Units\": \"ppb\" in the "
                                   "sidecar)")
        if kind == "R2starmap":
            # In-brain R2* has a median of ~15-30 1/s at 1.5-3 T; a T2* map in ms has ~40-60.
            # The limit grows with B0; at 7 T the two overlap and the check stays quiet.
            limit = 38.0 * max(1.0, b0 / 3.0)
            if b0 <= 3.5 and median > limit:
                raise InputError(path, f"median R2* {median:.3g} 1/s is implausible at "
                                       f"{b0:g} T; is this a T2* map in ms? (R2* in 1/s "
                                       "expected, ~15-30 in brain)")
            if median > 0 and median < 0.5:
                raise InputError(path, f"median R2* {median:.3g} looks like 1/ms or a T2* "
                                       "map in s; R2* must be in 1/s")
        if kind == "T2starmap" and median > 1.0:
            raise InputError(path, f"median T2* {median:.3g} looks like milliseconds; BIDS "
                                   "requires seconds (divide by 1000, or declare \"Units\": "
                                   "\"ms\")")
    for k, path in enumerate(subject.megre, start=1):
        data, img = load_nifti(path)
        ref_img = ref_img or img
        _finite_checks(data, path, f"MEGRE echo-{k}")
        if np.isnan(data).any():
            raise InputError(path, "magnitude image contains NaN values")
        if float(data.min()) < 0:
            raise InputError(path, "negative values in a magnitude image (is this a phase "
                                   "image? name it part-phase)")
    if subject.t1w is not None:
        data, img = load_nifti(subject.t1w)
        ref_img = ref_img or img
        _finite_checks(data, subject.t1w, "the T1w")
    grid = ref_img
    return ValidatedSubject(
        key=subject.key, unit_factors=factors, shape=tuple(int(s) for s in grid.shape[:3]),
        affine=np.asarray(grid.affine).tolist(),
        voxel_size_mm=tuple(float(z) for z in grid.header.get_zooms()[:3]), notes=notes)
