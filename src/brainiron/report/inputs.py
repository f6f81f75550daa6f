"""What the report reads, named explicitly: group tables, sidecars and per-subject images.

The report never searches a folder: :func:`load_report_data` reads exactly the files it is
given (the workflow's report rule declares the same files as inputs). Optional files that
are missing or unreadable leave their section with a note.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import layout
from ..io import parse_name, read_json
from ..settings import Settings
from .summaries import (
    group_order,
    read_optional_tsv,
    read_truth_tables,
    split_segmentation,
    with_group,
)

__all__ = ["ReportData", "SubjectInputs", "SubjectRecord", "load_report_data", "subject_record"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class SubjectInputs:
    """The files the report shows of one subject (× session).

    Attributes
    ----------
    key : str
        ``sub-01`` or ``sub-01_ses-2``.
    qc : path or None
        The registration QC sidecar (``*_desc-registration_qc.json``).
    labels : path or None
        The native-space atomic labels (``*_space-individual_atlas-CIT168_dseg.nii.gz``);
        ``None`` where no overlay is drawn (the workflow's group page: the pieces draw them).
    lookup : path or None
        The table naming the labels (``index, name``: the ``_dseg.tsv`` written with them);
        ``None`` (or a missing file) draws the labels with brainiron's region table.
    registration_image : path or None
        The image that was registered (T1w, GRE magnitude, χ ...): the first overlay.
    maps : mapping
        Table map name (``Chimap``, ``R2starmap``) → the quantified image, as a path or as
        ``(path, source kind)`` with kind ``Chimap``, ``R2starmap``, ``T2starmap`` or
        ``derived`` (R2* fitted by brainiron) or ``qsm`` (χ reconstructed by brainiron from
        phase) — :attr:`brainiron.bids.Plan.maps` as is. A
        bare path's kind is its BIDS suffix; a path of ``None`` names a map by its kind only
        (the workflow's group page, which counts the kinds and draws no map).
    """

    key: str
    qc: PathLike | None
    labels: PathLike | None
    lookup: PathLike | None = None
    registration_image: PathLike | None = None
    maps: Mapping[str, PathLike | tuple[PathLike | None, str]] = field(default_factory=dict)

    @classmethod
    def from_layout(cls, deriv: PathLike, key: str, *, registration_image: PathLike | None
                    = None, maps: Mapping | None = None) -> SubjectInputs:
        """The QC sidecar, label image and lookup table at their places in brainiron's
        derivatives (:mod:`brainiron.layout`), with the given images."""
        return cls(key=key, qc=layout.subject_path(deriv, "registration_qc", key),
                   labels=layout.subject_path(deriv, "dseg", key),
                   lookup=layout.subject_path(deriv, "dseg_tsv", key),
                   registration_image=registration_image, maps=dict(maps or {}))

    def map_files(self) -> dict[str, tuple[Path | None, str]]:
        """Map name → (path or None, source kind) of each quantified image."""
        out = {}
        for name, value in self.maps.items():
            if isinstance(value, tuple | list):
                path, kind = value
            else:
                path, kind = value, _suffix(Path(value)) or name
            out[str(name)] = (Path(path) if path is not None else None, str(kind))
        return out


def _suffix(path: Path) -> str | None:
    try:
        return parse_name(path)[1]
    except ValueError:
        return None


@dataclass(frozen=True)
class SubjectRecord:
    """A subject as the report draws it: its QC record (``{}`` when the sidecar is missing
    or unreadable), its files and its label names (``lookup``: label index → name, ``None``
    for brainiron's region table)."""

    key: str
    qc: dict
    labels: Path | None
    lookup: dict[int, str] | None
    registration_image: Path | None
    maps: dict[str, tuple[Path | None, str]]


@dataclass(frozen=True)
class ReportData:
    """Everything the report's sections show, read once.

    ``regions`` holds the atlas rows of ``group/regions.tsv`` (with a text ``group``
    column), ``refined`` its contrast-refined rows; tables that were not given, are missing
    or unreadable are ``None``.
    """

    config: dict
    settings: Settings
    regions: pd.DataFrame | None
    refined: pd.DataFrame | None
    comparison: pd.DataFrame | None
    failed: pd.DataFrame | None
    ignored: pd.DataFrame | None
    subjects: list[SubjectRecord]
    truth: pd.DataFrame | None
    phantom: bool
    figures_dir: Path
    overlays: bool
    #: Per subject (in ``subjects`` order): its piece's JSON record with ``dir`` (the piece
    #: folder), ``None`` when missing (:func:`brainiron.report.subject.read_piece`).
    pieces: list = field(default_factory=list)
    #: The group report's folder (links to the pieces are relative to it).
    out_dir: Path = Path(".")

    @property
    def statistic(self) -> str:
        """Regional statistic shown and compared (``group_comparison.statistic``)."""
        return self.settings.group_comparison.statistic

    @property
    def groups(self) -> list[str]:
        """Groups of the regional table, the reference group first."""
        if self.regions is None:
            return []
        return group_order(self.regions, self.settings.group_comparison.reference_group)

    @property
    def maps(self) -> list[str]:
        """Quantified maps: those of the regional table, else of the configuration."""
        if self.regions is not None and "map" in self.regions:
            return list(dict.fromkeys(self.regions["map"]))
        return list(self.config.get("maps") or [])


def _read_json(path: PathLike | None) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    try:
        return dict(read_json(path))
    except Exception:  # noqa: BLE001 - an unreadable sidecar is shown as missing values
        return {}


def _read_lookup(path: PathLike | None) -> dict[int, str] | None:
    """Label index → name from an ``index, name`` table; ``None`` when there is none or it is
    missing or unreadable."""
    table = read_optional_tsv(path)
    if table is None or not {"index", "name"} <= set(table.columns):
        return None
    return dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True))


def subject_record(s: SubjectInputs) -> SubjectRecord:
    """A subject's files with its QC record and label names read."""
    reg = Path(s.registration_image) if s.registration_image is not None else None
    labels = Path(s.labels) if s.labels is not None else None
    return SubjectRecord(key=s.key, qc=_read_json(s.qc), labels=labels,
                         lookup=_read_lookup(s.lookup),
                         registration_image=reg, maps=s.map_files())


def load_report_data(subjects: Sequence[SubjectInputs] = (), *, regions: PathLike | None = None,
                     comparison: PathLike | None = None, failed: PathLike | None = None,
                     ignored: PathLike | None = None, description: PathLike | None = None,
                     config: Mapping | None = None, phantom_truth: Sequence[PathLike] = (),
                     figures_dir: PathLike, overlays: bool = True,
                     pieces: Sequence[dict | None] = (), out_dir: PathLike = ".") -> ReportData:
    """Read the report's inputs (the parameters of :func:`brainiron.report.build_report`)."""
    if config is None:
        generated = _read_json(description).get("GeneratedBy") or [{}]
        config = generated[0].get("Configuration") or {}
    config = dict(config)
    table = read_optional_tsv(regions)
    refined = None
    if table is not None:
        table, refined = split_segmentation(with_group(table))
    return ReportData(
        config=config, settings=Settings.from_config(config), regions=table, refined=refined,
        comparison=read_optional_tsv(comparison), failed=read_optional_tsv(failed),
        ignored=read_optional_tsv(ignored), subjects=[subject_record(s) for s in subjects],
        truth=read_truth_tables(phantom_truth) if phantom_truth else None,
        phantom=bool(phantom_truth), figures_dir=Path(figures_dir), overlays=overlays,
        pieces=list(pieces), out_dir=Path(out_dir))
