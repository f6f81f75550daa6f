"""The group tables: the long and wide regional tables, their column descriptions, the
failed and ignored lists, the group comparison table and ``dataset_description.json``.

The column descriptions (the BIDS sidecars ``regions.json``, ``desc-wide_regions.json`` and
``group_comparison.json``) are package data, ``data/columns.json``; only what is known at
run time is added here: the atlas reference files with their sha256, and the citations
(``{cite:<key>}`` in the JSON) from ``data/references.tsv`` (:mod:`brainiron.references`).

The long table (``group/regions.tsv``) has one row per subject × session × map × region ×
hemisphere (× segmentation): the subjects' ``desc-regions_stats.tsv`` one below the other,
the columns of ``participants.tsv`` (age, sex, group, ...) merged in, then iron
(:func:`brainiron.iron.add_iron`) and its age norm (:func:`brainiron.iron.add_norms`). The
wide table (``group/desc-wide_regions.tsv``) has one row per subject × session and one column per
map × region × hemisphere mean (and iron, iron z-score).

Examples
--------
>>> import pandas as pd
>>> long = pd.DataFrame({"participant_id": ["sub-01"], "session_id": [None],
...                      "map": ["Chimap"], "region": ["SN"], "hemisphere": ["L"],
...                      "units": ["ppm"], "mean": [0.12]})
>>> wide_table(long).columns.tolist()
['participant_id', 'session_id', 'Chimap_SN_L_mean_ppm']
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from . import __version__, references
from .errors import BrainironError
from .settings import ComparisonSettings, Settings

__all__ = [
    "FAILED_COLUMNS",
    "IGNORED_COLUMNS",
    "check_summary",
    "column_descriptions",
    "comparison_descriptions",
    "comparison_table",
    "dataset_description",
    "failed_table",
    "group_table",
    "ignored_table",
    "participant_descriptions",
    "table_descriptions",
    "wide_descriptions",
    "wide_table",
]

#: Columns of ``group/failed.tsv``: subject key, stage (rule, or ``discovery``), error.
FAILED_COLUMNS = ("subject", "stage", "error")
#: Columns of ``group/ignored.tsv``: the file or folder, and why brainiron does not use it.
IGNORED_COLUMNS = ("path", "reason")

#: Units of a map → how they are spelled in a wide table's column name.
_UNIT_SLUGS = {"ppm": "ppm", "1/s": "per_s", "s": "s"}


@cache
def _columns_spec() -> dict:
    text = resources.files("brainiron").joinpath("data/columns.json").read_text()
    return json.loads(text)


#: A citation in ``data/columns.json``: ``{cite:<key>}``, a key of :mod:`brainiron.references`.
_CITE = re.compile(r"\{cite:([A-Za-z0-9_:]+)\}")


def _cited(value):
    """``value`` with every ``{cite:<key>}`` replaced by :func:`brainiron.references.reference`
    (recursively through dicts and lists)."""
    if isinstance(value, str):
        return _CITE.sub(lambda m: references.reference(m.group(1)), value)
    if isinstance(value, dict):
        return {k: _cited(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cited(v) for v in value]
    return value


def _section(name: str) -> dict:
    """A fresh copy of one section of ``data/columns.json`` (callers may modify it), its
    ``{cite:<key>}`` placeholders filled in from ``data/references.tsv``."""
    return _cited(copy.deepcopy(_columns_spec()[name]))


# --------------------------------------------------------------------------------------------
# Column descriptions
# --------------------------------------------------------------------------------------------


def column_descriptions(columns: Sequence[str] | None = None,
                        extra: Mapping[str, Mapping] | None = None) -> dict:
    """Sidecar of the regional tables (``group/regions.tsv``, ``desc-regions_stats.tsv``).

    Parameters
    ----------
    columns : sequence of str, optional
        The table's header: the sidecar then describes exactly these columns, in order
        (default: every column the long table can have).
    extra : mapping, optional
        Descriptions of further columns (those merged in from ``participants.tsv``,
        :func:`participant_descriptions`).

    Returns
    -------
    dict
        Column name → ``{"Description": ..., "Units": ..., "Levels": ...}`` (:func:`group_table`
        columns); the ``atlas`` column also lists the atlas reference files (``Files``: name,
        package, sha256) from :func:`brainiron.atlas.reference_files`.

    Raises
    ------
    KeyError
        When a column of ``columns`` has no description.
    """
    from . import atlas
    from .sidecars import describe_columns

    out = _section("regions")
    files = atlas.reference_files()
    out["atlas"]["Files"] = files[["name", "package", "sha256"]].to_dict("records")
    return out if columns is None else describe_columns(columns, out, extra)


def table_descriptions(name: str, columns: Sequence[str] | None = None) -> dict:
    """Sidecar of a small table: ``dseg`` (the label lookup ``_dseg.tsv``), ``failed``,
    ``ignored`` or ``refinement_qc``; only ``columns`` (in order) when given."""
    from .sidecars import describe_columns

    spec = _section(name)
    return spec if columns is None else describe_columns(columns, spec)


def participant_descriptions(participants: str | os.PathLike | None,
                             columns: Iterable[str]) -> dict:
    """Descriptions of ``columns`` merged in from ``participants.tsv``: from the dataset's
    ``participants.json`` where it describes them, else ``"from participants.tsv"``."""
    described = {}
    if participants:
        sidecar = Path(participants).with_suffix(".json")
        try:
            described = json.loads(sidecar.read_text("utf-8"))
        except (OSError, ValueError):
            described = {}
    out = {}
    for col in columns:
        entry = described.get(col)
        out[col] = dict(entry) if isinstance(entry, dict) else {
            "Description": "from participants.tsv"}
    return out


def comparison_descriptions() -> dict:
    """Sidecar of ``group/group_comparison.tsv``: column name → description."""
    return _section("group_comparison")


def wide_descriptions(wide: pd.DataFrame) -> dict:
    """Sidecar of the wide table (:func:`wide_table`), one entry per column.

    Parameters
    ----------
    wide : DataFrame
        A table from :func:`wide_table`: ``participant_id``, ``session_id``, then columns
        ``<map>_<region>_<hemisphere>[_refined]_mean_<units>``, ``..._iron_mg_per_kg`` and
        ``..._iron_z``.

    Returns
    -------
    dict
        Column name → ``{"Description": ..., "Units": ...}`` (units ``ppm``, ``1/s`` or
        ``mg/kg wet tissue``; none for the z-scores).
    """
    spec = _section("regions_wide")
    out = spec["columns"]
    units_of = {slug: units for units, slug in _UNIT_SLUGS.items()}
    for col in wide.columns[2:]:
        map_, rest = col.split("_", 1)
        for kind in ("iron_mg_per_kg", "iron_z"):
            if rest.endswith(f"_{kind}"):
                where = rest.removesuffix(f"_{kind}")
                entry = dict(spec[kind])
                entry["Description"] = entry["Description"].format(map=map_, where=where)
                out[col] = entry
                break
        else:
            where, unit = rest.split("_mean_")
            how = ""
            if where.endswith("_refined"):
                where, how = where.removesuffix("_refined"), spec["refined"]
            out[col] = {"Description": spec["mean"]["Description"].format(
                map=map_, where=where, how=how), "Units": units_of.get(unit, unit)}
    return out


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _read_stats(item: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    from .io import read_tsv

    if isinstance(item, pd.DataFrame):
        return item
    return read_tsv(item, dtype={"session_id": str})


def group_table(stats: Sequence[str | os.PathLike | pd.DataFrame],
                participants: str | os.PathLike | pd.DataFrame | None = None,
                settings: Settings | None = None) -> pd.DataFrame:
    """The long group table: every subject's regional table, participants' data and iron.

    Parameters
    ----------
    stats : sequence of path or DataFrame
        The subjects' regional tables (``desc-regions_stats.tsv``, as written by the regions
        rule, or already read), concatenated in this order.
    participants : path or DataFrame, optional
        ``participants.tsv``; its columns not already in the tables (age in years, sex,
        group, ...) are merged on ``participant_id``. A path that does not exist is skipped.
    settings : Settings, optional
        Uses ``settings.iron`` (calibration per map, statistic converted) and
        ``settings.field_strength`` (T; for rows without ``field_strength_T``; ``None``: such
        rows must be χ, whose calibration does not scale with B0). Default:
        :class:`~brainiron.settings.Settings` ().

    Returns
    -------
    DataFrame
        One row per subject × session × map × region × hemisphere (× segmentation), with the
        iron columns (``iron_mg_per_kg``, ``iron_sd_mg_per_kg`` in mg/kg wet tissue, ...) and
        the age norm (``iron_expected_mg_per_kg``, ``iron_z``). Empty (no columns) without
        subjects.

    References
    ----------
    Iron calibrations and norms: ``data/calibrations.tsv`` and ``data/iron_norms.tsv``
    (:mod:`brainiron.iron`).
    """
    from .io import read_tsv

    settings = Settings() if settings is None else settings
    long = pd.concat([_read_stats(p) for p in stats], ignore_index=True) if len(stats) \
        else pd.DataFrame()
    if isinstance(participants, pd.DataFrame):
        people = participants
    elif participants and Path(participants).exists() and not long.empty:
        people = read_tsv(participants, dtype={"participant_id": str})
        if "age" in people.columns and people["age"].dtype == object:  # 89+ (BIDS)
            from .bids import parse_ages

            people = parse_ages(people, participants)
    else:
        people = None
    if people is not None and not long.empty:
        extra = [c for c in people.columns if c != "participant_id" and c not in long.columns]
        long = long.merge(people[["participant_id", *extra]], on="participant_id", how="left")
    if not long.empty:
        from .iron import add_iron, add_norms

        long = add_iron(long, settings.iron.calibrations, settings.iron.statistic,
                        settings.field_strength)
        long = add_norms(long)
    return long


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per subject (× session), one column per map × region × hemisphere mean.

    Parameters
    ----------
    long : DataFrame
        The long table (:func:`group_table`) with ``participant_id``, ``session_id``,
        ``map``, ``region``, ``hemisphere``, ``units``, ``mean`` and optionally
        ``segmentation``, ``iron_mg_per_kg`` and ``iron_z``.

    Returns
    -------
    DataFrame
        ``participant_id``, ``session_id`` (empty string when none; ``n/a`` once written), then
        the means with the units in the column name (``Chimap_SN_L_mean_ppm``,
        ``R2starmap_Pu_R_mean_per_s``; contrast-refined regions
        ``Chimap_SN_L_refined_mean_ppm``), then ``<stem>_iron_mg_per_kg`` (mg/kg wet
        tissue) and ``<stem>_iron_z`` when the long table has iron. Columns in the order of
        first appearance in the long table.
    """
    if long.empty:
        return pd.DataFrame(columns=["participant_id", "session_id"])
    df = long.copy()
    df["session_id"] = df["session_id"].fillna("")
    stem = df["map"] + "_" + df["region"] + "_" + df["hemisphere"]
    if "segmentation" in df:  # contrast-refined regions: their own columns
        stem = stem.where(df["segmentation"].fillna("atlas") == "atlas", stem + "_refined")
    slug = df["units"].map(lambda u: _UNIT_SLUGS.get(u, u.replace("/", "_per_")))
    parts = [(stem + "_mean_" + slug, "mean")]
    if "iron_mg_per_kg" in df:
        parts += [(stem + "_iron_mg_per_kg", "iron_mg_per_kg"), (stem + "_iron_z", "iron_z")]
    # dropna=False keeps regions without a value as columns, but crosses every participant
    # with every session: keep the subject-sessions that were measured, in table order.
    measured = pd.MultiIndex.from_frame(df[["participant_id", "session_id"]].drop_duplicates())
    frames = []
    for column, value in parts:
        piece = df.assign(column=column).pivot_table(
            index=["participant_id", "session_id"], columns="column", values=value,
            aggfunc="first", sort=False, dropna=False)
        frames.append(piece.reindex(measured)[list(dict.fromkeys(column))])
    wide = pd.concat(frames, axis=1).reset_index()
    wide.columns.name = None
    return wide


def comparison_table(long: pd.DataFrame | None, settings: ComparisonSettings | None = None
                     ) -> pd.DataFrame:
    """The group comparison of the atlas regions (:func:`brainiron.stats.group_comparison`).

    Parameters
    ----------
    long : DataFrame or None
        The long table (:func:`group_table`); None or empty when every subject failed.
        Contrast-refined rows are left out (they are a sensitivity check).
    settings : ComparisonSettings, optional
        Reference group, covariates and the statistic compared.

    Returns
    -------
    DataFrame
        The columns of :func:`comparison_descriptions`; no rows without subjects.
    """
    from .stats import group_comparison

    settings = ComparisonSettings() if settings is None else settings
    if long is None or long.empty:
        return pd.DataFrame(columns=list(comparison_descriptions()))
    if "segmentation" in long:
        long = long[long["segmentation"].fillna("atlas") == "atlas"]
    return group_comparison(long, reference_group=settings.reference_group,
                            covariates=list(settings.covariates), statistic=settings.statistic)


def failed_table(records: Iterable[Mapping]) -> pd.DataFrame:
    """``group/failed.tsv``: subjects left out of the tables, with the stage and the error.

    Parameters
    ----------
    records : iterable of mapping
        ``{"subject": key, "stage": rule or "discovery", "error": one line}``.
    """
    return pd.DataFrame(list(records), columns=list(FAILED_COLUMNS))


def ignored_table(records: Iterable[Mapping]) -> pd.DataFrame:
    """``group/ignored.tsv``: files of the dataset brainiron does not use, and why.

    Parameters
    ----------
    records : iterable of mapping
        ``{"path": file, "reason": why}`` (:meth:`brainiron.bids.Dataset.ignored_table`).
    """
    return pd.DataFrame(list(records), columns=list(IGNORED_COLUMNS))


def check_summary(failed: pd.DataFrame, where: str | os.PathLike) -> dict:
    """The end-of-run summary, or an error listing the subjects that failed.

    Parameters
    ----------
    failed : DataFrame
        ``group/failed.tsv`` (:func:`failed_table`).
    where : path
        Named in the error.

    Returns
    -------
    dict
        ``{"failed": 0, "finished": local time, ISO 8601}``.

    Raises
    ------
    BrainironError
        When ``failed`` has rows.
    """
    if len(failed):
        listing = "; ".join(f"{r.subject}: {r.error}" for r in failed.itertuples())
        raise BrainironError(f"{len(failed)} subject(s) failed ({where}): {listing}")
    return {"failed": 0, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def dataset_description(config: Mapping, deriv: str | os.PathLike = ".",
                        source: str | os.PathLike | None = None) -> dict:
    """``dataset_description.json`` of the derivatives (BIDS 1.10).

    Parameters
    ----------
    config : mapping
        The run's whole configuration, recorded as ``GeneratedBy[0].Configuration`` (values
        JSON cannot hold become strings; absolute paths become relative to ``deriv``).
    deriv : path
        The derivatives folder the description is written in.
    source : path, optional
        The source dataset (default ``config["bids_dir"]``, or the phantom beside the
        derivatives when that is empty): ``SourceDatasets`` is its BIDS URI ``bids:raw:``
        (and its ``DatasetDOI``), ``DatasetLinks`` maps ``raw`` to it (relative to
        ``deriv``); its ``License`` and ``Authors`` are carried over.
    """
    from . import sidecars

    if source is None:
        source = config.get("bids_dir") or Path(deriv).parent / "phantom"
    raw = sidecars.raw_description(source)
    origin = {"URL": f"bids:{sidecars.RAW}:"}
    if raw.get("DatasetDOI"):
        origin["DOI"] = raw["DatasetDOI"]
    configuration = json.loads(json.dumps(config, default=str))
    out = {
        "Name": "brainiron regional iron",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainiron", "Version": __version__,
                         "CodeURL": "https://github.com/brainiron/brainiron",
                         "Configuration": sidecars.relative_paths(configuration, deriv)}],
        "SourceDatasets": [origin],
        "DatasetLinks": sidecars.dataset_links(source, deriv),
    }
    out.update({k: raw[k] for k in ("License", "Authors") if raw.get(k)})
    return out
