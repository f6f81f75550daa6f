"""Writing the phantom BIDS dataset and its ground truth (:func:`generate_phantom`)."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import __version__, atlas, layout, norms, sidecars, tables
from ..io import build_name, save_nifti, write_json, write_tsv
from .config import PhantomConfig
from .geometry import make_geometry, rician, sample, smooth_field
from .tissues import BACKGROUND, phantom_labels, subject_iron, tissue_lut, truth_table

__all__ = ["TRUTH_PIPELINE", "generate_phantom", "truth_dir", "truth_path"]

#: The ground truth's derivatives folder, ``<bids_dir>/derivatives/phantom-truth``.
TRUTH_PIPELINE = "phantom-truth"


def truth_dir(bids_dir: str | Path, key: str | None = None) -> Path:
    """The phantom's ground-truth folder, or one subject's ``anat`` folder in it.

    Parameters
    ----------
    bids_dir : path
        The phantom BIDS dataset.
    key : str, optional
        ``sub-01`` (or ``sub-01_ses-2``); default the truth's root (``truth.tsv``,
        ``dataset_description.json``).

    Returns
    -------
    Path
        ``<bids_dir>/derivatives/phantom-truth[/sub-<label>[/ses-<label>]/anat]``.
    """
    root = Path(bids_dir) / "derivatives" / TRUTH_PIPELINE
    return root if key is None else root / layout.folder_of(key) / "anat"


def truth_path(bids_dir: str | Path, key: str, entities: dict | None = None,
               suffix: str = "regions", ext: str = ".tsv") -> Path:
    """A file of one subject's ground truth; by default its truth table.

    Parameters
    ----------
    bids_dir : path
        The phantom BIDS dataset.
    key : str
        ``sub-01`` (or ``sub-01_ses-2``).
    entities : dict, optional
        Entities after the key's (``{"space": "individual", "atlas": "CIT168"}``); default
        ``{"desc": "truth"}``.
    suffix, ext : str
        BIDS suffix and extension (default the truth table, ``regions`` ``.tsv``).

    Returns
    -------
    Path
        ``truth_dir(bids_dir, key) / "sub-01_desc-truth_regions.tsv"`` by default.
    """
    keyed = dict(part.split("-", 1) for part in key.split("_"))
    extra = {"desc": "truth"} if entities is None else entities
    return truth_dir(bids_dir, key) / build_name({**keyed, **extra}, suffix, ext)


@functools.lru_cache(maxsize=4)
def _smoothed_template(voxel_size: tuple[float, float, float]) -> np.ndarray:
    """The T1 template blurred to the native voxel size (FWHM = voxel size) before sampling."""
    tpl = atlas.load_reference("template")
    sigma = np.mean(voxel_size) / 2.3548
    if sigma < 0.5:
        return np.asarray(tpl.data, dtype=np.float32)
    return ndimage.gaussian_filter(np.asarray(tpl.data, dtype=np.float32), sigma)



def _phase_truth(root: Path, label: str, index: int, cfg: PhantomConfig, chi: np.ndarray,
                 brain: np.ndarray, affine: np.ndarray):
    """Field (ppm), phase offset (rad) and 2π·γ̄ of a subject's phase echoes; the true χ and
    the true field go to the ground truth. A generator of its own keeps every other image as
    it is without phase."""
    from .phase import phase_model

    field, offset, omega = phase_model(chi, brain, affine,
                                       np.random.default_rng([cfg.seed, index, 11]))
    key = f"sub-{label}"
    save_nifti(chi, truth_path(root, key, {"space": "individual", "desc": "truth"}, "Chimap",
                               ".nii.gz"), affine, dtype=np.float32)
    save_nifti(field, truth_path(root, key, {"space": "individual", "desc": "truth"},
                                 "fieldmap", ".nii.gz"), affine, dtype=np.float32)
    return field, offset, omega


def _write_subject(root: Path, label: str, index: int, cfg: PhantomConfig,
                   demographics: dict) -> pd.DataFrame:
    rng = np.random.default_rng([cfg.seed, index, 7])
    geom = make_geometry(cfg, index, rng)
    labels = phantom_labels()
    tissues = atlas.template_tissues()
    sampled = sample(geom, {
        "labels": (np.asarray(labels.data), 0),
        "tissue": (np.asarray(tissues.data), 0),
        "t1": (_smoothed_template(cfg.voxel_size), 1),
    })
    tissue_index = np.where(sampled["labels"] > 0, sampled["labels"],
                            np.where(sampled["tissue"] > 0, sampled["tissue"] + 20, 0))
    tissue_index = tissue_index.astype(np.int16)
    brain = tissue_index > 0

    iron = subject_iron(cfg, demographics["age"], demographics["group"], rng)
    lut = tissue_lut(iron, cfg)
    size = len(BACKGROUND) + 21
    chi_lut, r2s_lut, pd_lut = (np.zeros(size, np.float32) for _ in range(3))
    chi_lut[lut["index"]] = lut["chi_ppm"]
    r2s_lut[lut["index"]] = lut["r2star_per_s"]
    pd_lut[lut["index"]] = lut["proton_density"]

    bias = np.exp(0.15 * smooth_field(geom.shape, (4, 4, 4), rng)[0])
    sub = {"sub": label}
    anat = root / f"sub-{label}" / "anat"
    b0 = cfg.field_strength
    written = []

    if cfg.with_chimap:
        chi = chi_lut[tissue_index]
        chi[brain] += cfg.chi_noise_ppm * rng.standard_normal(int(brain.sum()), np.float32)
        written.append(save_nifti(chi, anat / build_name(sub, "Chimap"), geom.affine))
        write_json({"Units": "ppm", "MagneticFieldStrength": b0,
                    "Description": "brainiron phantom susceptibility map (no reference "
                                   "subtraction)"}, anat / build_name(sub, "Chimap", ".json"))
    if cfg.with_r2starmap:
        r2s = r2s_lut[tissue_index]
        r2s[brain] += cfg.r2star_noise_per_s * rng.standard_normal(int(brain.sum()), np.float32)
        r2s[brain] = np.maximum(r2s[brain], 0.0)
        save_nifti(r2s, anat / build_name(sub, "R2starmap"), geom.affine)
        write_json({"Units": "1/s", "MagneticFieldStrength": b0},
                   anat / build_name(sub, "R2starmap", ".json"))
    if cfg.with_megre:
        s0 = 1000.0 * pd_lut[tissue_index] * bias
        sigma = 1000.0 * float(norms.phantom_tissues().loc["WM", "proton_density"]) / cfg.snr
        if cfg.with_phase:
            field, offset, omega = _phase_truth(root, label, index, cfg, chi_lut[tissue_index],
                                                brain, geom.affine)
        for echo, te in enumerate(cfg.echo_times, start=1):
            signal = s0 * np.exp(-r2s_lut[tissue_index] * te)
            meta = {"EchoTime": te, "MagneticFieldStrength": b0, "FlipAngle": 15,
                    "RepetitionTime": round(cfg.echo_times[-1] + 0.008, 4),
                    "MRAcquisitionType": "3D", "EchoNumber": echo}
            if cfg.with_phase:
                mag, angle = rician(signal, sigma, rng, with_angle=True)
                phase = np.angle(np.exp(1j * (omega * b0 * te * field + offset + angle)))
                ents = {**sub, "echo": str(echo), "part": "phase"}
                save_nifti(phase.astype(np.float32), anat / build_name(ents, "MEGRE"),
                           geom.affine, dtype=np.float32)
                write_json({**meta, "Units": "rad"}, anat / build_name(ents, "MEGRE", ".json"))
            else:
                mag = rician(signal, sigma, rng)
            ents = {**sub, "echo": str(echo), "part": "mag"}
            save_nifti(np.rint(mag), anat / build_name(ents, "MEGRE"), geom.affine, dtype=np.int16)
            write_json(meta, anat / build_name(ents, "MEGRE", ".json"))
    if cfg.with_t1w:
        t1 = 10.0 * sampled["t1"] * bias
        t1 = rician(t1, 0.015 * 850.0, rng)
        save_nifti(np.rint(t1), anat / build_name(sub, "T1w"), geom.affine, dtype=np.int16)
        write_json({"MagneticFieldStrength": b0}, anat / build_name(sub, "T1w", ".json"))

    # Ground truth.
    key = f"sub-{label}"
    native = {"space": "individual"}
    dseg = np.where(tissue_index <= 20, tissue_index, 0).astype(np.int16)
    save_nifti(dseg, truth_path(root, key, {**native, "atlas": "CIT168"}, "dseg", ".nii.gz"),
               geom.affine, intent="label")
    write_tsv(labels.lookup, truth_path(root, key, {**native, "atlas": "CIT168"}, "dseg"))
    save_nifti(tissue_index, truth_path(root, key, {**native, "desc": "tissue"}, "dseg",
                                        ".nii.gz"), geom.affine, intent="label")
    write_tsv(lut[["index", "key"]].rename(columns={"key": "name"}),
              truth_path(root, key, {**native, "desc": "tissue"}, "dseg"))
    xfm = {"from": "individual", "to": atlas.TEMPLATE_NAME, "mode": "points"}
    write_json({
        "matrix": geom.mni_from_native.tolist(),
        "convention": "x_MNI = A @ (x + u(x)); x: subject world coordinates (mm, RAS), u: the "
                      "displacement field of the companion _desc-displacement_xfm.nii.gz "
                      "(mm, world axes, on the subject's native grid)",
        "orientation": geom.orientation,
    }, truth_path(root, key, {**xfm, "desc": "affine"}, "xfm", ".json"))
    save_nifti(np.moveaxis(geom.displacement, 0, -1), truth_path(
        root, key, {**xfm, "desc": "displacement"}, "xfm", ".nii.gz"), geom.affine)
    table = truth_table(lut, tissue_index, float(np.prod(cfg.voxel_size)))
    table.insert(0, "participant_id", key)
    write_tsv(table, truth_path(root, key))
    grid = sorted(anat.glob("*.nii.gz"))[0]  # every raw image of a phantom subject shares its grid
    _write_truth_sidecars(root, key, sidecars.bids_uri(grid, root), list(table.columns))
    return table


def _write_truth_sidecars(root: Path, key: str, grid: str, columns: list[str]) -> None:
    """The sidecars of one subject's truth: both label images (with their lookup's columns)
    and the truth table."""
    native = {"space": "individual"}
    lookup = tables.table_descriptions("dseg")
    tissues = {**lookup, "name": {**lookup["name"], "Description": "tissue: an atlas region "
                                  "and hemisphere (<region>_<L|R>), or CSF, GM, WM"}}
    for entities, what, described in (
            ({**native, "atlas": "CIT168"}, "brainiron's atlas labels", lookup),
            ({**native, "desc": "tissue"}, "the phantom's tissues (the atlas labels, then "
             "CSF / GM / WM)", tissues)):
        write_json({**sidecars.image_sidecar(
            f"true labels of {what} on the subject's native grid (the template's labels "
            "carried by the subject's true deformation)", [], spatial_reference=grid,
            Manual=False), **described}, truth_path(root, key, entities, "dseg", ".json"))
    write_json(tables.table_descriptions("phantom_truth", columns),
               truth_path(root, key, ext=".json"))


#: Licence of the phantom (synthetic images made from the reference images, whose terms the
#: README lists).
_LICENSE = "Synthetic data; made from reference images under their own terms (see README)"
_AUTHORS = ["brainiron developers"]
_TRUTH_IGNORE = (
    ("/truth.*", "the truth of every subject in one table: BIDS has no group-level names"),
    ("*_regions.*", "per-subject truth tables: BIDS has no suffix for region tables"),
    ("*_xfm.*", "the true transform (affine and displacement field): BIDS has no transform "
                "suffix; named as fMRIPrep and TemplateFlow do"),
)


def _readme(cfg: PhantomConfig) -> str:
    files = atlas.reference_files()
    terms = "\n".join(f"- {r.name} ({r.package}): {r.licence}; {r.citation}"
                       for r in files.itertuples())
    return f"""# brainiron phantom

Synthetic BIDS dataset written by brainiron {__version__} (brainiron.generate_phantom):
{cfg.n_subjects} subject(s) whose images (Chimap, R2starmap, MEGRE magnitude echoes, T1w, as
configured in dataset_description.json's brainironPhantom) follow from known regional iron
through named calibrations, on subject-specific native grids (a random affine and a smooth
displacement of the MNI152NLin2009cAsym template). The ground truth (native labels, truth
tables, the true transform) is in derivatives/phantom-truth.

Made from these reference images (their licences and citations):

{terms}
"""


def _write_dataset_files(root: Path, cfg: PhantomConfig, settings: dict) -> None:
    """``dataset_description.json`` and ``README.md`` of the phantom and of its truth, the
    truth's ``.bidsignore`` and atlas description."""
    readme = _readme(cfg)
    generated = [{"Name": "brainiron phantom", "Version": __version__}]
    write_json({"Name": "brainiron phantom", "BIDSVersion": "1.10.0", "DatasetType": "raw",
                "License": _LICENSE, "Authors": _AUTHORS, "GeneratedBy": generated,
                "SourceDatasets": sidecars.reference_datasets(),
                "brainironPhantom": settings}, root / "dataset_description.json")
    (root / "README.md").write_text(readme, encoding="utf-8")
    truth_root = truth_dir(root)
    write_json({"Name": "brainiron phantom ground truth", "BIDSVersion": "1.10.0",
                "DatasetType": "derivative", "License": _LICENSE, "Authors": _AUTHORS,
                "GeneratedBy": generated,
                "SourceDatasets": [{"URL": f"bids:{sidecars.RAW}:"}],
                "DatasetLinks": sidecars.dataset_links(root, truth_root)},
               truth_root / "dataset_description.json")
    (truth_root / "README.md").write_text(readme, encoding="utf-8")
    (truth_root / ".bidsignore").write_text(sidecars.bidsignore_text(_TRUTH_IGNORE),
                                            encoding="utf-8")
    write_json(sidecars.atlas_description(), truth_root / "atlas-CIT168_description.json")


def generate_phantom(out_dir: str | Path, config: PhantomConfig | None = None,
                     **overrides) -> pd.DataFrame:
    """Write a phantom BIDS dataset with ground truth; return the truth table.

    Parameters
    ----------
    out_dir : path
        Destination folder; must not exist or be empty. The dataset is assembled in a
        temporary sibling folder and renamed into place, so an interrupted run leaves nothing.
    config : PhantomConfig, optional
        Parameters (defaults: 4 subjects, 2.5 mm, seed 0).
    **overrides
        Fields of :class:`PhantomConfig` to change, e.g. ``n_subjects=3``.

    Returns
    -------
    DataFrame
        Truth for every subject × region × hemisphere: ``participant_id, region, hemisphere,
        n_voxels, volume_mm3, iron_mg_per_kg, chi_ppm, r2star_per_s, proton_density`` plus
        ``age, sex, group``.
    """
    import shutil
    import tempfile

    cfg = replace(config or PhantomConfig(), **overrides)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: exists and is not empty; choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    started = time.perf_counter()
    write = _write_subject
    if cfg.realism == "realistic":
        from .realistic import write_subject as write
    try:
        people = []
        rows = []
        for i, label in enumerate(cfg.subject_labels):
            demo_rng = np.random.default_rng([cfg.seed, i, 1])
            demo = {"participant_id": f"sub-{label}",
                    "age": round(float(demo_rng.uniform(*cfg.age_range)), 1),
                    "sex": str(demo_rng.choice(["F", "M"])),
                    "group": "control" if i % 2 == 0 else "rls"}
            people.append(demo)
            rows.append(write(tmp, label, i, cfg, demo))
        participants = pd.DataFrame(people)
        write_tsv(participants, tmp / "participants.tsv")
        write_json({
            "age": {"Description": "age at scan", "Units": "year"},
            "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
            "group": {"Description": "diagnostic group",
                      "Levels": {"control": "healthy control", "rls": "restless legs syndrome"}},
        }, tmp / "participants.json")
        _write_dataset_files(tmp, cfg, cfg.description())
        truth_root = truth_dir(tmp)
        truth = pd.concat(rows, ignore_index=True).merge(participants, on="participant_id")
        write_tsv(truth, truth_root / "truth.tsv")
        write_json(tables.table_descriptions("phantom_truth", list(truth.columns)),
                   truth_root / "truth.json")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    truth.attrs["seconds"] = time.perf_counter() - started
    return truth
