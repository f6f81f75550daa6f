"""Every derivative path, from one specification (``data/io_spec.json``).

Rules, steps and the report take their paths from here; nothing else spells a derivative
name (smriprep's ``io_spec.json`` and snakebids' ``bids()`` are the models). A subject output
lives in ``<deriv>/sub-<label>[/ses-<label>]/anat/`` and is named
``sub-<label>[_ses-<label>]_<entities>_<suffix><extension>`` with the entities in the order
the specification gives; a group output at a fixed path under ``<deriv>``.

Two forms of the same names:

* :func:`subject_path` — a concrete path for one subject (``key`` ``sub-01`` or
  ``sub-01_ses-2``);
* :func:`subject_pattern` — the Snakemake pattern with ``{folder}`` and ``{key}`` wildcards.

Examples
--------
>>> subject_path("out/brainiron", "dseg", "sub-01_ses-2")
PosixPath('out/brainiron/sub-01/ses-2/anat/sub-01_ses-2_space-individual_atlas-CIT168_dseg.nii.gz')
>>> group_path("out/brainiron", "regions")
PosixPath('out/brainiron/group/regions.tsv')
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path

__all__ = [
    "ATLAS",
    "TEMPLATE",
    "deriv_of",
    "figure_name",
    "figure_path",
    "figure_pattern",
    "figures_dir",
    "folder_of",
    "group_path",
    "log_path",
    "names",
    "run_path",
    "split_key",
    "subject_name",
    "subject_path",
    "subject_pattern",
]


@cache
def _spec() -> dict:
    return json.loads(resources.files("brainiron").joinpath("data/io_spec.json").read_text())


TEMPLATE: str = _spec()["template"]
ATLAS: str = _spec()["atlas"]


def names() -> dict[str, tuple[str, ...]]:
    """The output names of each section: ``{"subject": (...), "group": (...), "figures":
    (...), "run": (...), "logs": (...)}``."""
    spec = _spec()
    return {section: tuple(spec[section]) for section in ("subject", "group", "figures", "run",
                                                          "logs")}


def folder_of(key: str) -> str:
    """``sub-01`` → ``sub-01``; ``sub-01_ses-2`` → ``sub-01/ses-2``."""
    return key.replace("_ses-", "/ses-", 1)


def deriv_of(path: str | os.PathLike, key: str) -> Path:
    """The derivatives folder of subject output ``path`` of ``key`` (its folder less
    ``sub-<label>[/ses-<label>]/anat``)."""
    tail = (*folder_of(key).split("/"), "anat")
    parent = Path(path).parent
    if parent.parts[-len(tail):] != tail:
        raise ValueError(f"{path}: not a subject output of {key}")
    return Path(*parent.parts[:-len(tail)])


def split_key(key: str) -> tuple[str, str]:
    """``sub-01_ses-2`` → (``sub-01``, ``ses-2``); ``sub-01`` → (``sub-01``, ``""``)."""
    participant, _, session = key.partition("_")
    return participant, session


def subject_name(name: str, key: str) -> str:
    """The file name of subject output ``name`` for ``key`` (no folder)."""
    try:
        entry = _spec()["subject"][name]
    except KeyError:
        raise KeyError(f"no subject output {name!r} in io_spec.json (known: "
                       f"{', '.join(_spec()['subject'])})") from None
    fill = {"template": TEMPLATE, "atlas": ATLAS}
    parts = [key, *(f"{k}-{v.format(**fill)}" for k, v in entry["entities"].items()),
             entry["suffix"]]
    return "_".join(parts) + entry["extension"]


def subject_path(deriv: str | os.PathLike, name: str, key: str) -> Path:
    """Path of subject output ``name`` (a key of ``io_spec.json``'s ``subject``)."""
    return Path(deriv) / folder_of(key) / "anat" / subject_name(name, key)


def subject_pattern(deriv: str | os.PathLike, name: str) -> str:
    """Snakemake pattern of subject output ``name``, with ``{folder}`` and ``{key}``."""
    return f"{deriv}/{{folder}}/anat/" + subject_name(name, "{key}")


def figures_dir(deriv: str | os.PathLike, key: str) -> Path:
    """The folder of a subject's report pieces: ``<deriv>/sub-01[/ses-2]/figures``."""
    return Path(deriv) / folder_of(key) / _spec()["figures"]["folder"]


def figure_path(deriv: str | os.PathLike, name: str, key: str) -> Path:
    """Path of report piece ``name`` of ``key`` (in :func:`figures_dir`)."""
    return figures_dir(deriv, key) / figure_name(name, key)


def figure_pattern(deriv: str | os.PathLike, name: str) -> str:
    """Snakemake pattern of report piece ``name``, with ``{folder}`` and ``{key}``."""
    return f"{deriv}/{{folder}}/{_spec()['figures']['folder']}/" + figure_name(name, "{key}")


def figure_name(name: str, key: str) -> str:
    """The file name of report piece ``name`` (a key of ``io_spec.json``'s ``figures``,
    not ``folder``) of ``key`` (``sub-01``, ``sub-01_ses-2`` or Snakemake's ``{key}``)."""
    spec = _spec()["figures"]
    if name == "folder" or name not in spec:
        raise KeyError(f"no report piece {name!r} in io_spec.json (known: "
                       f"{', '.join(n for n in spec if n != 'folder')})")
    return spec[name].format(key=key)


def group_path(deriv: str | os.PathLike, name: str) -> Path:
    """Path of group output ``name`` (a key of ``io_spec.json``'s ``group``)."""
    try:
        return Path(deriv) / _spec()["group"][name]
    except KeyError:
        raise KeyError(f"no group output {name!r} in io_spec.json") from None


def run_path(output_dir: str | os.PathLike, name: str) -> Path:
    """Path of a run file under ``output_dir`` (``derivatives`` = brainiron's derivatives
    folder, ``phantom`` = the built-in phantom dataset, its log and benchmark, the merged
    ``config``)."""
    try:
        return Path(output_dir) / _spec()["run"][name]
    except KeyError:
        raise KeyError(f"no run file {name!r} in io_spec.json") from None


def log_path(deriv: str | os.PathLike, name: str, **wildcards: str) -> str:
    """Log or benchmark path (``subject_log``, ``subject_benchmark``, ``group_log``,
    ``group_benchmark``); wildcards not given stay as Snakemake wildcards."""
    pattern = _spec()["logs"][name]
    fill = {w: wildcards.get(w, f"{{{w}}}") for w in ("folder", "key", "rule")}
    return f"{deriv}/" + pattern.format(**fill)
