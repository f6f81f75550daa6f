"""Failures: how a rule's error is reported and recorded, and what is cleaned up after it.

Every rule script runs its step through :func:`run_step`. A problem with the input
(:class:`~brainiron.errors.BrainironError`) or the file system (``OSError``: no space, no
permission) ends in one line on stderr and in the rule's log; anything else is a bug and
keeps its traceback in the log. A per-subject rule that fails leaves a failure record
``<log>.failed.json`` ({subject, rule, error}); ``brainiron run``, the Snakefile's
``onerror`` and the group rule read them (:func:`read_failures`) to list failures in
``group/failed.tsv`` and remove the failed subjects' partial outputs
(:func:`remove_failed_outputs`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from . import layout
from .errors import BrainironError

__all__ = [
    "FAILED_SUFFIX",
    "cannot_write",
    "failure_marker",
    "read_failed_table",
    "read_failures",
    "remove_failed_outputs",
    "run_step",
    "subject_folder",
]

#: Suffix of the marker a failed per-subject rule leaves beside its log (read by
#: ``brainiron run`` and the group rule to list failures; removed when the rule succeeds).
FAILED_SUFFIX = ".failed.json"


def failure_marker(log_path: str | os.PathLike) -> Path:
    """``<log>.failed.json`` — the failure record of one rule run."""
    return Path(str(log_path) + FAILED_SUFFIX)


def read_failures(deriv_dir: str | os.PathLike) -> dict[str, dict]:
    """Failure records under ``<deriv>/logs``: subject key → {subject, rule, error}."""
    out: dict[str, dict] = {}
    for path in sorted(Path(deriv_dir, "logs").rglob(f"*{FAILED_SUFFIX}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("subject"):
            out.setdefault(record["subject"], record)
    return out


def subject_folder(deriv: Path, key: str) -> Path | None:
    """``<deriv>/sub-X[/ses-Y]`` of a subject key, or None for anything unexpected."""
    if not re.fullmatch(r"sub-[a-zA-Z0-9]+(?:_ses-[a-zA-Z0-9]+)?", key):
        return None
    return deriv / layout.folder_of(key)


def remove_failed_outputs(deriv: str | os.PathLike, keys: Iterable[str] | None = None
                          ) -> list[str]:
    """Remove the output folders (``<deriv>/sub-X[/ses-Y]``) of subjects whose rules failed.

    ``keys`` defaults to the subjects with a failure record under ``<deriv>/logs``. Logs and
    failure records stay. Meant to run when no job is running: after Snakemake ends
    (``brainiron run``, or the Snakefile's ``onerror``). Returns the keys whose folder was
    removed.
    """
    deriv = Path(deriv)
    removed = []
    for key in sorted(read_failures(deriv) if keys is None else keys):
        folder = subject_folder(deriv, key)
        if folder is not None and folder.exists() and \
                folder.resolve().is_relative_to(deriv.resolve()):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(key)
    return removed


def read_failed_table(path: str | os.PathLike, newer_than: float = 0.0
                      ) -> list[tuple[str, str, str]]:
    """Rows (subject, stage, error) of a ``group/failed.tsv`` written after ``newer_than``
    (epoch s); none when it is absent or older (left by an earlier run)."""
    from .io import read_tsv

    path = Path(path)
    if not path.exists() or path.stat().st_mtime < newer_than:
        return []
    # pandas quotes fields holding quotes ("Units": "ppb"): read it back the same way.
    table = read_tsv(path, dtype=str).fillna("")
    return [tuple(row) for row in table.reindex(columns=["subject", "stage", "error"],
                                                fill_value="").itertuples(index=False)]


def cannot_write(outputs: Iterable) -> str | None:
    """Why a 1 MB file cannot be written beside the outputs (full disk, quota), or None.

    Tools such as ANTs report a full disk as a generic failure; this probe turns it into the
    message a researcher needs.
    """
    for folder in sorted({Path(str(p)).parent for p in outputs}):
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".brainiron-write-test-") as fh:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
                os.fsync(fh.fileno())
        except FileNotFoundError:
            continue
        except OSError as exc:
            why = "the disk is full or a quota or file-size limit is reached" if exc.errno in (
                errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "check the folder's permissions"
            return f"{folder}: cannot write ({exc.strerror}): {why}"
    return None


def _log(path, message: str) -> None:
    if path:
        with contextlib.suppress(OSError):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(message.rstrip() + "\n")


def _problem(exc: BaseException, smk, log) -> str:
    """The one-line cause of a step's failure (a bug keeps its traceback in the log)."""
    if isinstance(exc, BrainironError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or exc}"
    _log(log, traceback.format_exc())
    return cannot_write(smk.output) or \
        f"unexpected {type(exc).__name__}: {exc} (a bug: see {log})"


def run_step(smk, main: Callable, *, subject_done: bool = False) -> None:
    """Run a rule's step ``main(smk)`` (``smk`` is the ``snakemake`` script object).

    On failure: one line on stderr and in the rule's log, a failure record for per-subject
    rules (:func:`failure_marker`), exit status 1. On success the rule's failure record is
    removed; with ``subject_done`` (the rule that writes the subject's regional table) every
    older record of that subject is stale (e.g. of a rule the configuration no longer asks
    for) and removed too.
    """
    from .io import write_json

    started = time.perf_counter()
    rule = smk.rule
    log = smk.log[0] if len(smk.log) else None
    key = dict(smk.wildcards.items()).get("key")
    marker = failure_marker(log) if log and key else None
    try:
        main(smk)
    except Exception as exc:  # noqa: BLE001 - reported, recorded, then exit 1
        problem = _problem(exc, smk, log)
        message = f"brainiron: error in {rule}" + (f" for {key}" if key else "") + \
            f": {problem}"
        _log(log, message)
        if marker is not None:
            with contextlib.suppress(OSError):
                write_json({"subject": key, "rule": rule, "error": problem}, marker)
        print(message, file=sys.stderr)
        sys.exit(1)
    if marker is not None:
        marker.unlink(missing_ok=True)
        if subject_done:
            for stale in marker.parent.glob(f"{key}_*.log{FAILED_SUFFIX}"):
                stale.unlink(missing_ok=True)
    _log(log, f"{rule} finished in {time.perf_counter() - started:.1f} s")
