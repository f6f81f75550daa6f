"""Folder listings read once per discovery.

BIDS inheritance makes every image's sidecar look-up (:func:`brainiron.bids.sidecar`) search
the dataset's root folder, which holds one ``sub-<label>`` entry per subject: listing it again
for each of a subject's ~12 images made discovery grow with the square of the number of
subjects (1,000 subjects: 12,000 listings of a 1,000-entry folder). Inside
:func:`listing_scope` (which :func:`brainiron.bids.discover` opens) each folder is listed once;
outside it, every call lists the folder afresh, so a long-lived process never sees a stale
listing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["entries_ending_with", "listing_scope"]

# Per scope: folder -> its names, (folder, ending) -> the matching paths.
_SCOPES: list[dict] = []


@contextlib.contextmanager
def listing_scope() -> Iterator[None]:
    """Within the block, each folder is listed at most once (by :func:`entries_ending_with`).

    Meant for one discovery pass, which reads the dataset as it is at that moment; nested
    scopes are independent.
    """
    _SCOPES.append({})
    try:
        yield
    finally:
        _SCOPES.pop()


def _names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:  # missing, not a folder, unreadable: what Path.glob gives (nothing)
        return []


def entries_ending_with(folder: str | os.PathLike, ending: str) -> list[Path]:
    """The entries of ``folder`` whose name ends with ``ending``, sorted by name.

    The same as ``sorted(Path(folder).glob("*" + ending))`` for an ``ending`` without glob
    characters (on POSIX: case-sensitive, hidden names included), with the folder listed once
    per :func:`listing_scope`.

    Parameters
    ----------
    folder : path
        The folder to list.
    ending : str
        End of the names wanted, e.g. ``"MEGRE.json"``.

    Returns
    -------
    list of Path
    """
    folder = Path(folder)
    if not _SCOPES:
        return [folder / name for name in _names(folder) if name.endswith(ending)]
    cache = _SCOPES[-1]
    found = cache.get((folder, ending))
    if found is None:
        names = cache.get(folder)
        if names is None:
            names = cache[folder] = _names(folder)
        found = cache[(folder, ending)] = [folder / n for n in names if n.endswith(ending)]
    return list(found)
