"""Discovery: find and select a subject's images, read sidecars and headers.

Reads only file names, sidecars and NIfTI headers, so it is fast enough to run when the
workflow is planned; problems are one-line :class:`~brainiron.errors.InputError` messages
that name the file. The selection rules are in the package docstring (:mod:`brainiron.bids`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import load_nifti, parse_name, read_json, read_tsv
from .listing import entries_ending_with, listing_scope
from .phase import match_phase
from .subject import MAP_SUFFIXES, Dataset, Subject
from .validate import unregistrable_t2star

__all__ = ["discover", "grids_match", "parse_ages", "sidecar"]

_LABEL_RE = re.compile(r"^[a-zA-Z0-9]+$")
_NIFTI_RE = re.compile(r"\.nii(\.gz)?$")
_USED_SUFFIXES = {"T1w", "MEGRE", *MAP_SUFFIXES}


# --------------------------------------------------------------------------------------------
# Sidecars with BIDS inheritance
# --------------------------------------------------------------------------------------------


def sidecar(nifti: Path, root: Path) -> tuple[dict, list[Path]]:
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
        for candidate in entries_ending_with(folder, f"{suffix}.json"):
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


def _megre_series(files: list[Path], select: Mapping[str, str], phase: list[Path]
                  ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Group echoes into series (entities other than echo/part) and pick one series;
    ``part-phase`` files are appended to ``phase`` (matched later: :mod:`.phase`)."""
    ignored = []
    series: dict[tuple, list[Path]] = defaultdict(list)
    for path in files:
        ents = parse_name(path)[0]
        part = ents.get("part", "mag")
        if part == "phase":
            phase.append(path)
            continue
        if part != "mag":
            ignored.append((str(path), f"part-{part} is not used (brainiron reads the "
                                       "magnitude and the phase)"))
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
        meta, chain = sidecar(path, root)
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


def _field_strength(meta: Mapping, chain: list[Path], image: Path) -> dict[Path, float]:
    """``{sidecar: B0}`` when the metadata state ``MagneticFieldStrength``; checked (0-20 T)."""
    if "MagneticFieldStrength" not in meta:
        return {}
    value = meta["MagneticFieldStrength"]
    where = next((p for p in reversed(chain) if "MagneticFieldStrength" in read_json(p)),
                 image)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(where, f"MagneticFieldStrength must be a number in tesla, found "
                                f"{value!r}")
    if not np.isfinite(value) or not 0 < value <= 20:
        raise InputError(where, f"MagneticFieldStrength {value:g} T is implausible (must be "
                                "more than 0 and at most 20 T)")
    return {where: float(value)}


def grids_match(img_a, img_b, atol: float = 1e-3) -> bool:
    """True when two images have the same 3D shape and voxel-to-world affine (to ``atol`` mm)."""
    return (tuple(img_a.shape[:3]) == tuple(img_b.shape[:3])
            and np.allclose(img_a.affine, img_b.affine, atol=atol))


def _grid_text(img, other=None) -> str:
    """Shape and voxel size; with ``other`` of the same shape, how far the affines differ."""
    zooms = tuple(round(float(z), 3) for z in img.header.get_zooms()[:3])
    text = f"shape {tuple(int(s) for s in img.shape[:3])}, voxel {zooms} mm"
    if other is not None and tuple(img.shape[:3]) == tuple(other.shape[:3]):
        codes = tuple(int(img.header[c]) for c in ("qform_code", "sform_code"))
        gap = float(np.abs(np.asarray(img.affine) - np.asarray(other.affine)).max())
        text += (f"; same shape, but its voxel-to-world matrix differs by up to {gap:.3g} "
                 f"(qform_code {codes[0]}, sform_code {codes[1]}: check the header's "
                 "orientation)")
    return text


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
        phase: list[Path] = []
        echoes, ign = _megre_series(by_suffix.get("MEGRE", []), select, phase)
        subj.ignored += ign
        megre_meta: dict = {}
        if echoes:
            subj.megre, subj.echo_times, megre_meta = _check_echoes(echoes, root)
        subj.phase, ign = match_phase(subj.megre, phase, "Chimap" in subj.maps)
        subj.ignored += ign
        if subj.registration_kind is None and "T2starmap" in subj.maps:
            raise unregistrable_t2star(subj.maps["T2starmap"],
                                       str(sidecar(subj.maps["T2starmap"], root)[0]
                                           .get("Units", "")))
        if subj.registration_kind is None:
            raise InputError(where, "no usable image: need a Chimap, R2starmap, T2starmap or "
                                    "MEGRE magnitude (and ideally a T1w)")
        if not subj.maps and len(subj.megre) < 2:
            raise InputError(where, "nothing to quantify: no Chimap / R2starmap / T2starmap, "
                                    "and R2* needs at least 2 MEGRE echoes")

        # Headers: readable, 3D, sane affine; maps and echoes share one grid.
        strengths = {}
        if subj.megre:
            strengths.update(_field_strength(megre_meta, sidecar(subj.megre[0], root)[1],
                                             subj.megre[0]))
        headers = {}
        for kind, path in subj.maps.items():
            headers[kind] = load_nifti(path, load_data=False)[1]
            meta, chain = sidecar(path, root)
            strengths.update(_field_strength(meta, chain, path))
            subj.units[kind] = str(meta.get("Units", "")).strip()
        for k, path in enumerate(subj.megre, start=1):
            headers[f"MEGRE echo-{k}"] = load_nifti(path, load_data=False)[1]
        if subj.t1w is not None:
            headers["T1w"] = load_nifti(subj.t1w, load_data=False)[1]
            strengths.update(_field_strength(*sidecar(subj.t1w, root), subj.t1w))
        grid_names = [n for n in headers if n != "T1w"]
        ref_name = grid_names[0]
        paths = {**subj.maps, **{f"MEGRE echo-{k}": p for k, p in enumerate(subj.megre, 1)}}
        if subj.t1w is not None:
            paths["T1w"] = subj.t1w
        for name in grid_names[1:] + (["T1w"] if "T1w" in headers and t1w_grid == "same"
                                      else []):
            if not grids_match(headers[name], headers[ref_name]):
                raise InputError(paths[name], (
                    f"grid ({_grid_text(headers[name], headers[ref_name])}) differs from "
                    f"{paths[ref_name].name} ({_grid_text(headers[ref_name])}); images of one "
                    "subject must share one grid" + (
                        " (or set registration.t1w_grid: coregister to register it to the "
                        "maps)" if name == "T1w" else "")))
        if "T1w" in headers:
            subj.t1w_alignment = ("same" if grids_match(headers["T1w"], headers[ref_name])
                                  else t1w_grid)
        values = set(strengths.values())
        if len(values) > 1:
            raise InputError(where, f"sidecars disagree on MagneticFieldStrength "
                                    f"({sorted(values)} T)")
        subj.field_strength = values.pop() if values else None
    except InputError as exc:
        subj.errors.append(str(exc))
    return subj


def _check_rows(path: Path) -> None:
    """Every row of a BIDS TSV has the header's number of fields (no quoting in BIDS)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text (byte at position {exc.start}); BIDS TSV "
                               "files must be UTF-8") from None
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(path, "empty file (a header row with participant_id is needed)")
    width = lines[0].count("\t") + 1
    for row, line in enumerate(lines[1:], start=1):
        fields = line.count("\t") + 1
        if fields != width:
            raise InputError(path, f"row {row} has {fields} fields, header has {width} "
                                   "(tab-separated, one field per column)")


def parse_ages(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Column ``age`` as years; BIDS' de-identified ``89+`` becomes 89, marked in ``age_note``.

    Parameters
    ----------
    table : DataFrame
        ``participants.tsv`` as read (any dtype).
    path : path
        For the message.

    Returns
    -------
    DataFrame
        A copy with numeric ``age`` (and ``age_note`` = ``89+`` on the capped rows, when
        there are any).

    Raises
    ------
    InputError
        A value that is neither a number nor ``<number>+``.
    """
    if "age" not in table.columns:
        return table
    if table["age"].dtype != object:
        return table
    table = table.copy()
    text = table["age"].str.strip()
    capped = text.str.fullmatch(r"\d+(\.\d+)?\+", na=False)
    age = pd.to_numeric(text.where(~capped, text.str.rstrip("+")), errors="coerce")
    wrong = table.loc[age.isna() & table["age"].notna(), "age"].tolist()
    if wrong:
        raise InputError(path, f"column age must be numeric (years, or 89+), found "
                               f"{wrong[0]!r}")
    table["age"] = age
    if capped.any():
        table["age_note"] = text.where(capped, None)
    return table


def _read_participants(root: Path) -> pd.DataFrame | None:
    path = root / "participants.tsv"
    if not path.exists():
        return None
    _check_rows(path)
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
    return parse_ages(table, path)


def _session_problem(folder: Path, sessions: list[Path]) -> InputError | None:
    """A subject folder mixing ``ses-*`` and session-less data, or a bad session label."""
    for session in sessions:
        if not _LABEL_RE.match(session.name[4:]):
            return InputError(session, f"invalid session label {session.name!r} (ses-<label>, "
                                       "letters and digits only)")
    if sessions and (folder / "anat").exists():
        names = ", ".join(s.name for s in sessions)
        return InputError(folder, f"has both session folders ({names}) and a session-less "
                                  "anat/: BIDS allows one or the other; move anat/ into a "
                                  "ses-<label> folder")
    return None


def discover(bids_dir: str | Path, participant_label: Iterable[str] | None = None,
             select: Mapping[str, str] | None = None, t1w_grid: str = "coregister"
             ) -> Dataset:
    """Discover every subject (and session) of a BIDS dataset and check file-level facts.

    Parameters
    ----------
    bids_dir : path
        Root of a BIDS dataset.
    participant_label : iterable of str, optional
        Only these subjects (with or without ``sub-``).
    select : mapping, optional
        Entity filter applied when choosing files, e.g. ``{"acq": "qsm"}``.
    t1w_grid : {"coregister", "world", "same"}
        A T1w on another grid than the maps': ``coregister`` (registered to the maps'
        reference image by the workflow), ``world`` (used through scanner coordinates, i.e.
        assumed not to have moved) or ``same`` (an error). Recorded per subject as
        :attr:`Subject.t1w_alignment` (``same`` when the grids coincide).

    Returns
    -------
    Dataset
        Subjects with their chosen files; subjects with problems carry ``errors``.

    Raises
    ------
    InputError
        For dataset-level problems: missing folder, no subjects, a broken participants.tsv.
    """
    with listing_scope():  # each folder listed once (the root holds every subject)
        return _discover(bids_dir, participant_label, select, t1w_grid)


def _discover(bids_dir, participant_label, select, t1w_grid) -> Dataset:
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
        problem = _session_problem(folder, sessions)
        if problem is not None:
            failed = Subject(subject=label)
            failed.errors.append(str(problem))
            subjects.append(failed)
            continue
        for session, anat in units:
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
