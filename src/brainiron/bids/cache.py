"""Discovery once per dataset state: the discovered dataset kept on disk between runs.

The workflow plans every subject from :func:`~brainiron.bids.discover`, which reads each
image's header and sidecars (1,000 subjects: ~11,000 headers). It needs the result when the
run is planned, and on a cluster again in every job (each job starts Snakemake anew). With
:func:`discover_cached` it is computed once and kept in one JSON file (written atomically)
under the output folder; it is used again while its key matches: the dataset's file listing
(name, size, modification and change times of every file discovery may read), the discovery
settings and the code that discovers. Adding, removing or changing a file of the dataset
changes the key, and discovery runs again.

Only what discovery can read enters the key: the dataset's top-level entries and everything
under its ``sub-*`` folders (``derivatives/``, ``sourcedata/`` and the like are not walked).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..io import write_text
from .discover import discover
from .subject import Dataset, Subject

__all__ = ["CACHE_FILE", "cache_path", "dataset_fingerprint", "discover_cached",
           "load_cached", "store_cached"]

#: The cache file, relative to the run's output folder.
CACHE_FILE = ".brainiron/discovery.json"
#: Changes when the file's layout changes.
_FORMAT = 1
#: The modules whose code decides what discovery finds (their text enters the key).
_CODE = ("bids/discover.py", "bids/subject.py", "bids/phase.py", "bids/validate.py",
         "bids/listing.py", "bids/cache.py", "io.py", "nifti.py", "errors.py")


def cache_path(output_dir: str | os.PathLike) -> Path:
    """Where the run in ``output_dir`` keeps its discovered dataset."""
    return Path(output_dir) / CACHE_FILE


def _code_digest() -> str:
    import nibabel

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(f"{nibabel.__version__} {pd.__version__}".encode())
    for name in _CODE:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def _entry(path: str, name: str) -> str:
    try:
        st = os.stat(path)
    except OSError:  # a broken symbolic link (git-annex content not fetched)
        st = os.lstat(path)
    return f"{name}\t{st.st_mode:o}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\n"


def dataset_fingerprint(bids_dir: str | os.PathLike, settings: Mapping) -> str:
    """A key that changes when a file discovery may read, or a setting, changes.

    Parameters
    ----------
    bids_dir : path
        The BIDS dataset.
    settings : mapping
        The discovery settings (JSON-serialisable).

    Returns
    -------
    str
        Hex SHA-256 of the settings, the discovery code, and (name, mode, size, modification
        and change time) of the dataset's top-level entries and of everything under its
        ``sub-*`` folders. O(number of files), no file is opened.
    """
    root = Path(bids_dir).resolve()
    digest = hashlib.sha256(json.dumps(
        {"format": _FORMAT, "root": str(root), "settings": settings, "code": _code_digest()},
        sort_keys=True, default=str).encode())
    with os.scandir(root) as it:
        top = sorted(it, key=lambda e: e.name)
    for entry in top:
        digest.update(_entry(entry.path, entry.name).encode())
        if not (entry.name.startswith("sub-") and entry.is_dir()):
            continue
        for folder, dirs, files in os.walk(entry.path):
            dirs.sort()
            rel = os.path.relpath(folder, root)
            for name in sorted(files) + dirs:
                digest.update(_entry(os.path.join(folder, name), f"{rel}/{name}").encode())
    return digest.hexdigest()


def _to_json(dataset: Dataset) -> dict:
    people = dataset.participants
    return {
        "root": str(dataset.root),
        "subjects": [s.to_dict() for s in dataset.subjects],
        "ignored": [list(x) for x in dataset.ignored],
        "participants": None if people is None else {
            "columns": [str(c) for c in people.columns],
            "dtypes": [str(t) for t in people.dtypes],
            "rows": people.astype(object).to_numpy().tolist()},
    }


def _from_json(obj: Mapping) -> Dataset:
    people = obj["participants"]
    table = None
    if people is not None:
        table = pd.DataFrame(people["rows"], columns=people["columns"], dtype=object)
        table = table.astype(dict(zip(people["columns"], people["dtypes"], strict=True)))
    return Dataset(root=Path(obj["root"]), subjects=[Subject.from_dict(s) for s in
                                                     obj["subjects"]],
                   participants=table, ignored=[tuple(x) for x in obj["ignored"]])


def load_cached(path: str | os.PathLike, key: str | None = None) -> Dataset | None:
    """The dataset kept in ``path`` when its key is ``key`` (any key when None); else None.

    A missing, unreadable or foreign file is a miss, never an error.
    """
    try:
        obj = json.loads(Path(path).read_text())
        if obj.get("format") != _FORMAT or (key is not None and obj.get("key") != key):
            return None
        return _from_json(obj["dataset"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_cached(path: str | os.PathLike, key: str, dataset: Dataset) -> bool:
    """Keep ``dataset`` under ``key`` in ``path`` (atomically); False when it cannot be
    written (a read-only output folder only loses the cache)."""
    path = Path(path)
    text = json.dumps({"format": _FORMAT, "key": key, "dataset": _to_json(dataset)})
    try:
        write_text(text, path)
        # Temporaries of writers killed mid-way (atomic writes), after an hour.
        for stale in path.parent.glob(f".{path.name}.*.tmp*"):
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)
    except OSError:
        return False
    return True


def discover_cached(bids_dir: str | os.PathLike, cache: str | os.PathLike,
                    participant_label: Iterable[str] | None = None,
                    select: Mapping[str, str] | None = None, t1w_grid: str = "coregister",
                    *, trust: bool = False) -> Dataset:
    """:func:`~brainiron.bids.discover`, kept in ``cache`` and reused while the dataset and
    the settings are unchanged.

    Parameters
    ----------
    bids_dir, participant_label, select, t1w_grid
        As for :func:`~brainiron.bids.discover`.
    cache : path
        The cache file (:func:`cache_path` of the output folder).
    trust : bool
        Use the cache without checking the dataset (no listing): for the jobs of a run whose
        controlling process has just checked and written it, so that a cluster job's work
        does not grow with the cohort. Without a cache, discovery runs.

    Returns
    -------
    Dataset
        Equal to what :func:`~brainiron.bids.discover` returns.

    Raises
    ------
    InputError
        As :func:`~brainiron.bids.discover` (dataset-level problems are never cached).
    """
    if trust:
        found = load_cached(cache)
        if found is not None:
            return found
    settings = {"participant_label": sorted(participant_label or []),
                "select": dict(select or {}), "t1w_grid": t1w_grid}
    if not Path(bids_dir).is_dir():  # discover's own error, naming the folder
        return discover(bids_dir, participant_label, select, t1w_grid)
    key = dataset_fingerprint(bids_dir, settings)
    found = load_cached(cache, key)
    if found is None:
        found = discover(bids_dir, participant_label, select, t1w_grid)
        store_cached(cache, key, found)
    return found
