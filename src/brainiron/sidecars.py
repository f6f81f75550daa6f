"""BIDS metadata of the derivatives: BIDS URIs, the sidecars of images and tables, and the
dataset-level files (``README.md``, ``.bidsignore``, ``atlas-CIT168_description.json``).

Conventions (BIDS 1.10, *Common principles* and *Derivatives*; docs/bids.md):

* every file a derivative was made from is named by a **BIDS URI**: ``bids:raw:<path>`` for
  the source dataset (``raw`` is the ``DatasetLinks`` key of ``dataset_description.json``,
  the path relative to the derivatives folder) and ``bids::<path>`` for a file of the same
  derivatives folder;
* an image on the subject's own grid (``space-individual``) names that grid's raw image as
  its ``SpatialReference``;
* every TSV has a JSON sidecar describing exactly its columns (:func:`describe_columns`);
* what BIDS 1.10 has no name for is listed in ``.bidsignore`` (:data:`BIDSIGNORE`), one
  comment line per entry giving the reason.

Examples
--------
>>> bids_uri("/data/ds/sub-01/anat/sub-01_T1w.nii.gz", "/data/ds")
'bids:raw:sub-01/anat/sub-01_T1w.nii.gz'
>>> print(bidsignore_text([("/group", "group tables")]))
# group tables
/group
<BLANKLINE>
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "BIDSIGNORE",
    "RAW",
    "atlas_description",
    "bids_uri",
    "bidsignore_text",
    "dataset_links",
    "derivative_readme",
    "describe_columns",
    "grid_source",
    "image_sidecar",
    "raw_description",
    "reference_datasets",
    "registration_sidecars",
    "relaxometry_sidecars",
    "relative_paths",
    "source_uri",
]

#: The ``DatasetLinks`` name of the source (raw) dataset in BIDS URIs (``bids:raw:...``).
RAW = "raw"

#: ``.bidsignore`` of brainiron's derivatives: (pattern, why BIDS has no name for it). Kept
#: small; ``logs/`` needs no entry (BIDS 1.10 allows a top-level ``logs`` folder).
BIDSIGNORE: tuple[tuple[str, str], ...] = (
    ("/group", "group tables (all subjects in one table): BIDS has no group-level "
               "derivative names"),
    ("/report", "the HTML QC report and its figures: not data"),
    ("**/figures", "each subject's report page and its figures (sub-X[/ses-Y]/figures, as "
                   "fMRIPrep's): not data"),
    ("/benchmarks", "Snakemake's per-rule run times and memory (TSV, not data)"),
    ("*_xfm.*", "transforms: BIDS has no transform suffix; named as fMRIPrep and "
                "TemplateFlow do (from-X_to-Y_mode-image_xfm)"),
    ("*_stats.*", "regional statistics per subject: BIDS has no suffix for region tables"),
    ("*_qc.*", "registration and refinement QC records: BIDS has no QC suffix"),
    ("*_inputs.json", "run record: what validation found in the subject's raw files"),
)


def bids_uri(path: str | os.PathLike, root: str | os.PathLike, dataset: str = RAW) -> str:
    """The BIDS URI of ``path``, a file of the dataset at ``root``.

    Parameters
    ----------
    path : path
        A file inside ``root`` (absolute, or relative to the working directory).
    root : path
        The dataset's root folder.
    dataset : str
        The ``DatasetLinks`` name (``raw``); ``""`` for the dataset the URI is written in.

    Returns
    -------
    str
        ``bids:<dataset>:<path relative to root, POSIX>``.

    Raises
    ------
    ValueError
        When ``path`` is not inside ``root``.
    """
    relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    return f"bids:{dataset}:{relative.as_posix()}"


def source_uri(path: str | os.PathLike, raw_root: str | os.PathLike,
               deriv: str | os.PathLike) -> str:
    """BIDS URI of a file brainiron read: ``bids:raw:...`` inside the source dataset,
    ``bids::...`` inside the derivatives folder, else the file name alone."""
    for root, name in ((raw_root, RAW), (deriv, "")):
        try:
            return bids_uri(path, root, name)
        except ValueError:
            continue
    return Path(path).name


def registration_sidecars(subject: Mapping, registration_image: str, kind: str,
                          raw_root: str | os.PathLike, deriv: str | os.PathLike) -> dict:
    """The sidecars of the register rule's outputs (``dseg_json``, ``brain_mask_json``,
    ``xfm_forward_json``, ``xfm_inverse_json``; ``probseg`` holds the keys to add to the
    probabilities' sidecar), by :mod:`brainiron.layout` name.

    Parameters
    ----------
    subject : mapping
        :meth:`brainiron.bids.Subject.to_dict` (its files; ``key``).
    registration_image : str
        The image registered to the template; ``kind`` its kind (``T1w``, ``MEGRE``, ...).
    raw_root, deriv : path
        The source dataset and brainiron's derivatives folder (for the BIDS URIs).
    """
    from . import layout
    from .atlas import TEMPLATE_NAME

    key = subject["key"]

    def uri(path):
        return source_uri(path, raw_root, deriv)

    grid = uri(grid_source(subject))
    image = uri(registration_image)
    forward = uri(layout.subject_path(deriv, "xfm_forward", key))
    labels = "CIT168 subcortical nuclei, aseg and SUIT dentate labels"
    xfm = ("ANTs transform (displacement field, 5-D NIfTI, ITK convention) that resamples an "
           "image in {src} onto {dst}, from the registration of the subject's {kind} image to "
           "the template (fMRIPrep / TemplateFlow from-X_to-Y_mode-image_xfm convention; BIDS "
           "has no transform suffix)")
    return {
        "dseg_json": {**image_sidecar(
            f"{labels} on the subject's grid: the atlas carried from {TEMPLATE_NAME} by the "
            f"registration of the {kind} image (the dentate segmented from the contrast "
            "map inside the warped search region); lookup in the _dseg.tsv",
            [image, forward], spatial_reference=grid, Manual=False),
            **describe_columns(("index", "name"), _dseg_columns())},
        "probseg": {"Sources": [image, forward], "SpatialReference": grid},
        "brain_mask_json": image_sidecar(
            f"brain mask on the subject's grid: the {TEMPLATE_NAME} brain carried by the "
            "registration", [image, forward], spatial_reference=grid, Type="Brain"),
        "xfm_forward_json": image_sidecar(
            xfm.format(src=TEMPLATE_NAME, dst="the subject's grid", kind=kind), [image],
            spatial_reference=grid),
        "xfm_inverse_json": image_sidecar(
            xfm.format(src="the subject's grid", dst=TEMPLATE_NAME, kind=kind), [image],
            spatial_reference=TEMPLATE_NAME),
    }


def relaxometry_sidecars(r2star: Mapping) -> dict:
    """The sidecars of the relaxometry rule's maps (``r2star_json``, ``t2star_json``,
    ``s0_json``, ``goodness_json``) from the R2* map's
    (:func:`brainiron.relaxometry.r2star_sidecar`, its ``Sources`` BIDS URIs): each its own
    ``Units`` and ``Description``, none skull-stripped (NaN outside the magnitude's
    foreground)."""
    common = {k: r2star[k] for k in ("FitMethod", "EchoTime", "MagneticFieldStrength",
                                     "Sources") if k in r2star}
    where = "fitted by brainiron from the MEGRE magnitude echoes together with R2* (NaN where "
    where += "the fit is "
    where += "undefined and outside the magnitude's foreground)"

    def sidecar(units, what):
        return {"Units": units, "Description": f"{what} {where}", **common,
                "SkullStripped": False}

    return {
        "r2star_json": {**r2star, "SkullStripped": False},
        "t2star_json": sidecar("s", "T2* = 1 / R2*,"),
        "s0_json": sidecar("arbitrary", "S0, the signal extrapolated to TE = 0 (units of the "
                                        "magnitude images),"),
        "goodness_json": sidecar("1", "goodness of fit, the relative RMS residual "
                                      "||S - S_fit|| / ||S|| over the echoes (0: perfect),"),
    }


def _dseg_columns() -> dict:
    from .tables import table_descriptions

    return table_descriptions("dseg")


def grid_source(subject: Mapping) -> str:
    """The raw image whose grid the subject's outputs share: the first map, else the first
    MEGRE echo, else the T1w (the order validation takes the grid in).

    Parameters
    ----------
    subject : mapping
        :meth:`brainiron.bids.Subject.to_dict` (``maps``, ``megre``, ``t1w``).
    """
    maps = list((subject.get("maps") or {}).values())
    candidates = [*maps, *(subject.get("megre") or []), subject.get("t1w")]
    return str(next(c for c in candidates if c))


def image_sidecar(description: str, sources: Iterable[str], *,
                  spatial_reference: str | None = None, skull_stripped: bool | None = None,
                  **extra) -> dict:
    """The JSON sidecar of a derivative image.

    Parameters
    ----------
    description : str
        ``Description``: what the image holds.
    sources : iterable of str
        ``Sources``: BIDS URIs of the files it was made from (left out when empty).
    spatial_reference : str, optional
        ``SpatialReference`` (a BIDS URI), for images with a ``space`` entity.
    skull_stripped : bool, optional
        ``SkullStripped``, required of parametric maps (not of segmentations and masks).
    **extra
        Further keys (``Units``, ``Type``, ...), written after these.

    Returns
    -------
    dict
    """
    out: dict = {"Description": description}
    if sources := list(sources):
        out["Sources"] = sources
    if spatial_reference is not None:
        out["SpatialReference"] = spatial_reference
    if skull_stripped is not None:
        out["SkullStripped"] = bool(skull_stripped)
    out.update(extra)
    return out


def describe_columns(columns: Sequence[str], known: Mapping[str, Mapping],
                     fallback: Mapping[str, Mapping] | None = None) -> dict:
    """A TSV sidecar that describes exactly ``columns``, in their order.

    Parameters
    ----------
    columns : sequence of str
        The table's header.
    known : mapping
        Column name → description (``{"Description": ..., "Units": ...}``).
    fallback : mapping, optional
        Descriptions of columns not in ``known`` (e.g. ``participants.json``).

    Returns
    -------
    dict
        Column name → description.

    Raises
    ------
    KeyError
        When a column has no description in either.
    """
    fallback = fallback or {}
    out = {}
    for col in columns:
        entry = known.get(col, fallback.get(col))
        if entry is None:
            raise KeyError(f"no description of column {col!r}")
        out[col] = dict(entry)
    return out


def relative_paths(value, start: str | os.PathLike):
    """``value`` (JSON-like) with every absolute path string made relative to ``start``
    (recursively through dicts and lists), so that a record names no machine's folders."""
    if isinstance(value, str) and os.path.isabs(value):
        return Path(os.path.relpath(value, os.path.abspath(start))).as_posix()
    if isinstance(value, Mapping):
        return {k: relative_paths(v, start) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relative_paths(v, start) for v in value]
    return value


def bidsignore_text(entries: Iterable[tuple[str, str]] = BIDSIGNORE) -> str:
    """``.bidsignore``: per entry a ``#`` line with the reason, then the pattern."""
    return "".join(f"# {reason}\n{pattern}\n" for pattern, reason in entries)


def atlas_description() -> dict:
    """``atlas-CIT168_description.json``: the atlas the ``atlas-CIT168`` files come from.

    References
    ----------
    Pauli WM, Nili AN, Tyszka JM (2018) Sci Data 5:180063 (``data/references.tsv``); the
    label files and their licences: :func:`brainiron.atlas.reference_files`.
    """
    from . import atlas, references

    files = atlas.reference_files().set_index("name")
    return {
        "Name": "CIT168 subcortical nuclei (with aseg and SUIT dentate labels)",
        "Description": "brainiron's region labels: the CIT168 probabilistic subcortical "
                       "atlas, with the aseg caudate / putamen / pallidum / thalamus and the "
                       "SUIT dentate nucleus, in MNI152NLin2009cAsym; carried to each "
                       "subject's grid by the registration (see regions.tsv in the "
                       "brainiron package).",
        "SpatialReference": atlas.TEMPLATE_NAME,
        "License": "; ".join(f"{name}: {files.loc[name, 'licence']}"
                             for name in ("CIT168", "aseg", "SUIT")),
        "ReferencesAndLinks": [references.reference("pauli")],
        "Species": "Homo sapiens",
    }


def reference_datasets() -> list[dict]:
    """``SourceDatasets`` of what the phantom is made from: the reference images' packages
    (``URL`` on the package index, installed ``Version``) and the DOI of each one's paper
    (:func:`brainiron.atlas.reference_files`)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import atlas

    out = []
    for row in atlas.reference_files().itertuples():
        entry = {"URL": f"https://pypi.org/project/{row.package}/"}
        doi = str(row.citation).rpartition("doi:")[2].strip()
        if "doi:" in str(row.citation) and doi:
            entry["DOI"] = f"doi:{doi}"
        try:
            entry["Version"] = version(row.package)
        except PackageNotFoundError:
            pass
        out.append(entry)
    return out


def derivative_readme(name: str, version: str) -> str:
    """``README.md`` of brainiron's derivatives folder (what is where; no paths, no dates)."""
    return f"""# {name}

Derivatives written by brainiron {version}: regional brain iron from quantitative
susceptibility (Chimap), R2* (R2starmap) and multi-echo GRE (MEGRE) images of the source
dataset (`SourceDatasets` and `DatasetLinks` in dataset_description.json; `bids:raw:` URIs
in the sidecars' `Sources` name its files).

- `sub-<label>[/ses-<label>]/anat/`: per subject, on the subject's own grid
  (`space-individual`): atlas labels (`_dseg`, with the lookup `_dseg.tsv`), label
  probabilities (`_probseg`), the brain mask, fitted R2* / T2* / S0 maps where they were
  fitted from MEGRE, the transforms to and from MNI152NLin2009cAsym
  (`from-X_to-Y_mode-image_xfm`, the fMRIPrep / TemplateFlow convention), the regional
  statistics (`desc-regions_stats.tsv`) and QC records.
- `group/`: every subject in one long table (`regions.tsv`), one wide table
  (`desc-wide_regions.tsv`), the group comparison, and the subjects that failed or files
  that were ignored. Every table has a JSON sidecar describing its columns.
- `report/index.html`: the QC report. `logs/`, `benchmarks/`: the run's logs and timings.

`.bidsignore` lists what BIDS has no name for, with the reason for each entry. The run's
whole configuration is `GeneratedBy[0].Configuration` in dataset_description.json (paths
relative to this folder).
"""


def dataset_links(raw_root: str | os.PathLike, deriv: str | os.PathLike) -> dict:
    """``DatasetLinks`` of a derivatives folder: ``raw`` → the source dataset, as a path
    relative to the derivatives folder (a relative URI reference; no machine's folders)."""
    rel = os.path.relpath(os.path.abspath(raw_root), os.path.abspath(deriv))
    return {RAW: Path(rel).as_posix()}


def raw_description(raw_root: str | os.PathLike) -> dict:
    """The source dataset's ``dataset_description.json`` (empty when missing or unreadable)."""
    from . import layout

    try:
        # the same name at the root of every BIDS dataset as at the derivatives'
        path = layout.group_path(raw_root, "dataset_description")
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
