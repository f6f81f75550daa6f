"""The bad-input corpus: broken BIDS datasets made by code from the brainiron phantom.

No binary is committed: every case starts from a freshly generated phantom subject (4 mm, one
subject, a few seconds) and breaks one thing. Two kinds of case:

* :data:`SUBJECT_CASES` — one broken subject each. They are all put into ONE dataset next to
  a good subject (:func:`build_many`): "one bad subject among N". The bad subjects must fail
  with one line naming the file and the problem, the good one must yield its rows.
* :data:`RUN_CASES` — problems of the whole run (empty folder, participants.tsv, the
  configuration, an unwritable or full output disk); each gets its own small dataset.

The table of cases with their expected messages is in ``docs/reliability.md``; keep both in
step (``test_corpus.py::test_docs_list_every_case`` checks it).
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainiron.phantom import generate_phantom

#: The good subject every bad one is cloned from (RAS grid, 4 mm).
GOOD = "sub-01"
PHANTOM = {"n_subjects": 1, "seed": 5, "voxel_size": (4.0, 4.0, 4.0)}


# --------------------------------------------------------------------------------------------
# Small tools
# --------------------------------------------------------------------------------------------


def anat(root: Path, sub: str) -> Path:
    return root / sub / "anat"


def _data(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.float32), img


def _rewrite(path: Path, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace a NIfTI's voxels with fn(voxels), same affine."""
    data, img = _data(path)
    nib.save(nib.Nifti1Image(fn(data).astype(np.float32), img.affine), path)


def _header_edit(path: Path, fn: Callable[[nib.Nifti1Header], None]) -> None:
    """Rewrite a NIfTI with a hand-edited header (the raw fields as stored)."""
    data, img = _data(path)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    header.set_slope_inter(1.0, 0.0)
    fn(header)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + data.tobytes(order="F"),
                                   mtime=0))


def _sidecar(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _remove(folder: Path, pattern: str) -> None:
    for path in folder.glob(pattern):
        path.unlink()


def _participants(root: Path, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    tsv = root / "participants.tsv"
    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    fn(table).to_csv(tsv, sep="\t", index=False)


def _echo(sub: str, n: int, ext: str = ".nii.gz") -> str:
    return f"{sub}_echo-{n}_part-mag_MEGRE{ext}"


# --------------------------------------------------------------------------------------------
# One bad subject each
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectCase:
    """A subject broken in one way.

    ``label`` is the subject's BIDS label (it says what is wrong: ``sub-truncated``);
    ``file`` the name the message must contain (``{sub}`` is replaced by ``sub-<label>``);
    ``message`` a substring of the one-line message; ``stage`` where it is caught
    (``discovery``: when the workflow is planned, from names, sidecars and headers;
    ``validate``: the validate rule, reading the voxels; ``register``: registration QC).
    """

    label: str
    defect: str
    stage: str
    file: str
    message: str
    make: Callable[[Path, str], None] = field(repr=False)

    @property
    def sub(self) -> str:
        return f"sub-{self.label}"

    @property
    def file_name(self) -> str:
        return self.file.format(sub=self.sub)


def _truncated(root, sub):
    path = anat(root, sub) / f"{sub}_Chimap.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])


def _not_nifti(root, sub):
    (anat(root, sub) / f"{sub}_Chimap.nii.gz").write_bytes(
        gzip.compress(b"subject,value\n01,0.1\n" * 50))


def _empty_file(root, sub):
    (anat(root, sub) / f"{sub}_Chimap.nii.gz").write_bytes(b"")


def _plain_nii_named_gz(root, sub):
    path = anat(root, sub) / f"{sub}_Chimap.nii.gz"
    path.write_bytes(gzip.decompress(path.read_bytes()))


def _affine(value):
    def make(root, sub):
        def edit(header):
            aff = np.full((4, 4), value)
            aff[3] = (0, 0, 0, 1)
            header.set_sform(aff, code=1)
            header.set_qform(None, code=0)
        _header_edit(anat(root, sub) / f"{sub}_Chimap.nii.gz", edit)
    return make


def _zero_voxel(root, sub):
    def edit(header):
        header["pixdim"][1:4] = 0.0
        header["sform_code"] = 0
        header["qform_code"] = 1
    _header_edit(anat(root, sub) / f"{sub}_Chimap.nii.gz", edit)


def _no_orientation(root, sub):
    def edit(header):
        header["sform_code"] = 0
        header["qform_code"] = 0
    _header_edit(anat(root, sub) / f"{sub}_Chimap.nii.gz", edit)


def _two_d(root, sub):
    _rewrite(anat(root, sub) / f"{sub}_Chimap.nii.gz", lambda d: d[:, :, d.shape[2] // 2])


def _five_d(root, sub):
    _rewrite(anat(root, sub) / f"{sub}_Chimap.nii.gz",
             lambda d: np.stack([np.stack([d, d], -1)] * 2, -1))


def _fill(name, value):
    def make(root, sub):
        _rewrite(anat(root, sub) / f"{sub}_{name}.nii.gz", lambda d: np.full_like(d, value))
    return make


def _inf(root, sub):
    def poke(d):
        d[tuple(s // 2 for s in d.shape)] = np.inf
        d[0, 0, 0] = -np.inf
        return d
    _rewrite(anat(root, sub) / f"{sub}_R2starmap.nii.gz", poke)


def _ppb(root, sub):
    _rewrite(anat(root, sub) / f"{sub}_Chimap.nii.gz", lambda d: d * 1000.0)


def _r2star_is_t2star_ms(root, sub):
    _rewrite(anat(root, sub) / f"{sub}_R2starmap.nii.gz",
             lambda d: np.where(d > 0, 1000.0 / np.maximum(d, 1e-3), 0.0))


def _r2star_units_ms(root, sub):
    _sidecar(anat(root, sub) / f"{sub}_R2starmap.json", Units="ms")


def _t2star_ms(root, sub):
    a = anat(root, sub)
    _rewrite(a / f"{sub}_R2starmap.nii.gz",
             lambda d: np.where(d > 0, 1000.0 / np.maximum(d, 1e-3), 0.0))
    for ext in (".nii.gz", ".json"):
        (a / f"{sub}_R2starmap{ext}").rename(a / f"{sub}_T2starmap{ext}")
    _sidecar(a / f"{sub}_T2starmap.json", Units=None)


def _unknown_units(root, sub):
    _sidecar(anat(root, sub) / f"{sub}_Chimap.json", Units="furlongs")


def _echo_grid(root, sub):
    _rewrite(anat(root, sub) / _echo(sub, 3), lambda d: d[:, :, :-1])


def _echo_missing(root, sub):
    for ext in (".nii.gz", ".json"):
        (anat(root, sub) / _echo(sub, 3, ext)).unlink()


def _echo_time_missing(root, sub):
    _sidecar(anat(root, sub) / _echo(sub, 2, ".json"), EchoTime=None)


def _echo_time_ms(root, sub):
    for n in range(1, 9):
        path = anat(root, sub) / _echo(sub, n, ".json")
        _sidecar(path, EchoTime=round(json.loads(path.read_text())["EchoTime"] * 1000, 3))


def _echo_time_not_increasing(root, sub):
    a = anat(root, sub)
    te3 = json.loads((a / _echo(sub, 3, ".json")).read_text())["EchoTime"]
    _sidecar(a / _echo(sub, 4, ".json"), EchoTime=te3)


def _malformed_json(root, sub):
    (anat(root, sub) / _echo(sub, 2, ".json")).write_text('{"EchoTime": 0.009,,}')


def _json_not_object(root, sub):
    (anat(root, sub) / f"{sub}_Chimap.json").write_text('["ppm"]')


def _negative_magnitude(root, sub):
    _rewrite(anat(root, sub) / _echo(sub, 2), lambda d: d - 500.0)


def _chi_one_slice_short(root, sub):
    """QSMxT's classic one-slice-short grid, between the maps: the chi map one slice short of
    the R2* map (MEGRE removed). A T1w on its own grid is coregistered, but the maps of one
    subject must share one grid (they are quantified with one set of labels)."""
    a = anat(root, sub)
    _remove(a, "*MEGRE*")
    _rewrite(a / f"{sub}_Chimap.nii.gz", lambda d: d[:, :, :-1])


def _field_strengths(root, sub):
    _sidecar(anat(root, sub) / f"{sub}_Chimap.json", MagneticFieldStrength=7.0)


def _no_field_strength(root, sub):
    for path in anat(root, sub).glob("*.json"):
        _sidecar(path, MagneticFieldStrength=None)


def _only_t1w(root, sub):
    a = anat(root, sub)
    for pattern in ("*MEGRE*", "*R2starmap*", "*Chimap*"):
        _remove(a, pattern)


def _no_row(root, sub):
    _participants(root, lambda t: t[t["participant_id"] != sub])


def _no_folder(root, sub):
    shutil.rmtree(root / sub)


def _rotated_t1w(root, sub):
    """T1w voxels rotated 180 degrees about z (same grid): registration converges wrongly."""
    _rewrite(anat(root, sub) / f"{sub}_T1w.nii.gz", lambda d: d[::-1, ::-1, :])


SUBJECT_CASES: list[SubjectCase] = [
    SubjectCase("truncated", "truncated .nii.gz (first third of the file)", "validate",
                "{sub}_Chimap.nii.gz", "truncated or corrupt image data", _truncated),
    SubjectCase("notnifti", "gzip file that is not a NIfTI", "discovery",
                "{sub}_Chimap.nii.gz", "not a readable NIfTI image", _not_nifti),
    SubjectCase("emptyfile", "empty (0-byte) .nii.gz", "discovery",
                "{sub}_Chimap.nii.gz", "not a readable NIfTI image", _empty_file),
    SubjectCase("plainnii", "uncompressed NIfTI named .nii.gz", "discovery",
                "{sub}_Chimap.nii.gz", "not a readable NIfTI image", _plain_nii_named_gz),
    SubjectCase("zeroaffine", "NIfTI with an all-zero affine (sform)", "discovery",
                "{sub}_Chimap.nii.gz", "the affine is zero or singular", _affine(0.0)),
    SubjectCase("nanaffine", "NIfTI with a NaN affine (sform)", "discovery",
                "{sub}_Chimap.nii.gz", "contains NaN or Inf", _affine(np.nan)),
    SubjectCase("zerovoxel", "zero voxel size (pixdim 0, qform only)", "discovery",
                "{sub}_Chimap.nii.gz", "voxel size must be positive", _zero_voxel),
    SubjectCase("noorient", "qform and sform codes both 0", "discovery",
                "{sub}_Chimap.nii.gz", "no orientation in the header", _no_orientation),
    SubjectCase("twod", "2D image (one slice)", "discovery",
                "{sub}_Chimap.nii.gz", "expected a 3D image, found 2D", _two_d),
    SubjectCase("fived", "5D image", "discovery",
                "{sub}_Chimap.nii.gz", "expected a 3D image, found 5D", _five_d),
    SubjectCase("allnan", "chi map all NaN", "validate",
                "{sub}_Chimap.nii.gz", "the Chimap is all NaN", _fill("Chimap", np.nan)),
    SubjectCase("allzero", "chi map all zero", "validate",
                "{sub}_Chimap.nii.gz", "the Chimap is all zero", _fill("Chimap", 0.0)),
    SubjectCase("inf", "R2* map with +Inf and -Inf voxels", "validate",
                "{sub}_R2starmap.nii.gz", "contains 2 infinite values", _inf),
    SubjectCase("ppb", "chi map in ppb (values 1000x too large), no Units", "validate",
                "{sub}_Chimap.nii.gz", "this looks like ppb, not ppm", _ppb),
    SubjectCase("unknownunits", "chi sidecar Units 'furlongs'", "validate",
                "{sub}_Chimap.nii.gz", "unknown units 'furlongs' for Chimap", _unknown_units),
    SubjectCase("r2start2ms", "R2* map that is really T2* in ms", "validate",
                "{sub}_R2starmap.nii.gz", "is this a T2* map in ms?", _r2star_is_t2star_ms),
    SubjectCase("r2starunitsms", "R2* map whose sidecar says Units ms", "validate",
                "{sub}_R2starmap.nii.gz", "this is a T2* map, not R2*", _r2star_units_ms),
    SubjectCase("t2starms", "T2* map in ms without Units", "validate",
                "{sub}_T2starmap.nii.gz", "looks like milliseconds", _t2star_ms),
    SubjectCase("echogrid", "magnitude echo-3 on another grid (one slice short)", "discovery",
                _echo("{sub}", 3), "images of one subject must share one grid", _echo_grid),
    SubjectCase("echomissing", "echo-3 missing (image and sidecar)", "discovery",
                "{sub}/anat", "echo-3 missing in the MEGRE series", _echo_missing),
    SubjectCase("temissing", "EchoTime missing from echo-2's sidecar", "discovery",
                _echo("{sub}", 2, ".json"), "EchoTime missing from the JSON sidecar",
                _echo_time_missing),
    SubjectCase("tems", "EchoTime in ms in every sidecar", "discovery",
                _echo("{sub}", 1, ".json"), "looks like milliseconds; BIDS requires seconds",
                _echo_time_ms),
    SubjectCase("tenotincreasing", "echo-4 has echo-3's EchoTime", "discovery",
                _echo("{sub}", 4), "echo times do not increase with the echo number",
                _echo_time_not_increasing),
    SubjectCase("badjson", "malformed JSON sidecar (echo-2)", "discovery",
                _echo("{sub}", 2, ".json"), "malformed JSON (line 1", _malformed_json),
    SubjectCase("jsonlist", "sidecar holding a list, not an object", "discovery",
                "{sub}_Chimap.json", "JSON sidecar must hold an object", _json_not_object),
    SubjectCase("negmag", "negative values in a magnitude echo (a phase image?)", "validate",
                _echo("{sub}", 2), "negative values in a magnitude image", _negative_magnitude),
    SubjectCase("chishort", "chi map one slice short of the R2* map (QSMxT's classic)",
                "discovery", "{sub}_R2starmap.nii.gz", "differs from {sub}_Chimap.nii.gz",
                _chi_one_slice_short),
    SubjectCase("fieldstrengths", "sidecars disagree on MagneticFieldStrength", "discovery",
                "{sub}/anat", "sidecars disagree on MagneticFieldStrength", _field_strengths),
    SubjectCase("nob0", "no sidecar states MagneticFieldStrength (R2* needs B0), none "
                "configured", "validate", "{sub}_R2starmap.nii.gz",
                "MagneticFieldStrength is not stated in the sidecars", _no_field_strength),
    SubjectCase("onlyt1w", "a T1w and nothing to quantify", "discovery",
                "{sub}/anat", "nothing to quantify", _only_t1w),
    SubjectCase("norow", "subject folder without a participants.tsv row", "discovery",
                "participants.tsv", "{sub} has a folder but no row", _no_row),
    SubjectCase("nofolder", "participants.tsv row without a subject folder", "discovery",
                "participants.tsv", "{sub} is listed but has no folder", _no_folder),
    SubjectCase("rotated", "T1w voxels rotated 180 deg about z: registration diverges",
                "register", "{sub}_T1w.nii.gz", "failed QC", _rotated_t1w),
]

#: Folders next to the subjects whose names try to leave the dataset or the output folder;
#: they must be listed in group/ignored.tsv and nothing may be written outside the output.
ESCAPING_FOLDERS = ("sub-..", "sub-a.b")


def generate_good(root: Path) -> Path:
    """A one-subject phantom (``sub-01``) at 4 mm: the source of every case."""
    generate_phantom(root, **PHANTOM)
    shutil.rmtree(root / "derivatives")
    return root


def clone_subject(root: Path, new: str, source: str = GOOD) -> None:
    """Copy ``source``'s folder to ``new`` (file names renamed) and add a participants row."""
    src = root / source
    for path in sorted(src.rglob("*")):
        dest = root / new / path.relative_to(src)
        dest = dest.with_name(dest.name.replace(f"{source}_", f"{new}_"))
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)

    def add(table):
        row = table[table["participant_id"] == source].assign(participant_id=new)
        return pd.concat([table, row], ignore_index=True)

    _participants(root, add)


def build_many(root: Path, good: Path, cases: list[SubjectCase] = SUBJECT_CASES) -> Path:
    """One dataset: the good ``sub-01`` and one broken clone of it per case."""
    shutil.copytree(good, root)
    for case in cases:
        clone_subject(root, case.sub)
        case.make(root, case.sub)
    for name in ESCAPING_FOLDERS:
        shutil.copytree(root / GOOD, root / name)
    return root


# --------------------------------------------------------------------------------------------
# Problems of a whole run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCase:
    """A run that must stop before any subject is processed (or fail without leftovers).

    ``build(tmp, good)`` makes the dataset and returns ``(bids_dir, cli_args, smk_config)``:
    extra ``brainiron run`` arguments and the matching ``snakemake --config`` entries.
    ``file`` and ``message`` must both appear in the one-line error (``{bids}`` is replaced by
    the dataset path).
    """

    name: str
    defect: str
    file: str
    message: str
    build: Callable[[Path, Path], tuple[Path, list[str], list[str]]] = field(repr=False)


def _copy(tmp: Path, good: Path) -> Path:
    bids = tmp / "bids"
    shutil.copytree(good, bids)
    return bids


def _run_empty(tmp, good):
    bids = tmp / "bids"
    bids.mkdir()
    return bids, [], []


def _run_missing(tmp, good):
    return tmp / "no-such-dataset", [], []


def _run_duplicate(tmp, good):
    bids = _copy(tmp, good)
    _participants(bids, lambda t: pd.concat([t, t], ignore_index=True))
    return bids, [], []


def _run_participant_escape(tmp, good):
    bids = _copy(tmp, good)
    _participants(bids, lambda t: t.assign(participant_id="sub-../../escape"))
    return bids, [], []


def _run_participants_no_column(tmp, good):
    bids = _copy(tmp, good)
    _participants(bids, lambda t: t.rename(columns={"participant_id": "subject"}))
    return bids, [], []


def _run_with(cli, smk):
    def build(tmp, good):
        return _copy(tmp, good), list(cli), list(smk)
    return build


def _run_configfile(tmp, good):
    import yaml

    from brainiron.workflow import DEFAULT_CONFIG

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["chi_referense"] = "wholebrain"
    path = tmp / "my-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return _copy(tmp, good), ["--configfile", str(path)], ["--configfile", str(path)]


RUN_CASES: list[RunCase] = [
    RunCase("empty", "empty BIDS folder", "{bids}", "no sub-<label> folders", _run_empty),
    RunCase("missing", "BIDS folder that does not exist", "{bids}", "BIDS folder not found",
            _run_missing),
    RunCase("duplicate", "participants.tsv lists sub-01 twice", "participants.tsv",
            "duplicate participant_id sub-01", _run_duplicate),
    RunCase("participantescape", "participants.tsv id 'sub-../../escape'", "participants.tsv",
            "invalid participant_id 'sub-../../escape'", _run_participant_escape),
    RunCase("nocolumn", "participants.tsv without a participant_id column", "participants.tsv",
            "missing column participant_id", _run_participants_no_column),
    RunCase("labelescape", "participant_label '../../escape'", "config.participant_label.0",
            "does not match", _run_with(["--participant-label", "../../escape"],
                                        ["participant_label=[../../escape]"])),
    RunCase("excludeescape", "exclude '../sub-01'", "config.exclude.0", "does not match",
            _run_with(["--config", "exclude=[../sub-01]"], ["exclude=[../sub-01]"])),
    RunCase("wrongtype", "threads: two (wrong type)", "config.threads",
            "'two' is not of type 'integer'",
            _run_with(["--config", "threads=two"], ["threads=two"])),
    RunCase("unknownkey", "unknown top-level key", "config", "unknown key 'foo'",
            _run_with(["--config", "foo=1"], ["foo=1"])),
    RunCase("unknownnested", "unknown key under registration", "config.registration",
            "unknown key 'resolution'",
            _run_with(["--config", "registration.resolution=2"],
                      ["registration={resolution: 2}"])),
    RunCase("configfile", "configuration file with a misspelt key", "config",
            "unknown key 'chi_referense'", _run_configfile),
]
