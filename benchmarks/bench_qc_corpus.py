#!/usr/bin/env python
"""Registration QC on a corpus of good and broken registrations (issue 14 item 3).

Usage::

    python benchmarks/bench_qc_corpus.py                 # build, run (resumes), summarise
    python benchmarks/bench_qc_corpus.py --summary-only  # tables from the cached cases

The corpus comes from the realistic phantom (``brainiron.phantom.generate_phantom``,
``realism="realistic"``, ``image_sets=("T1w", "MEGRE", "Chimap")``, maps 3×3×3.5 mm, T1w
3 mm): two datasets, one with χ zero outside its eroded mask and one with NaN there, each
alternating the tv / l2 reconstructions by subject. Every case runs what the workflow's
``coregister`` and ``register`` rules run, as library calls:

* ``T1w`` path: ``registration.register(T1w, contrast="T1w")`` on the T1w's own grid, then
  ``registration.coregister(T1w → first-echo magnitude)``; the labels reach the maps' grid
  through ``with_coregistration`` (one interpolation);
* ``MEGRE`` path: ``register(first-echo magnitude, contrast="MEGRE")``;
* ``Chimap`` path: ``register(χ, contrast="Chimap")`` (χ-contrast template);

then the QC decision: ``registration.qc_failure`` (the template registration's flag), the
coregistration's flag, and ``registration.label_contrast_qc`` (the labels' iron contrast on
the χ map, what the ``register`` rule checks after ``native_atlas``) — any one leaves the
subject out by default. The decision is re-made from the cached labels at every summary, so
a change of limits needs no re-run.

Broken cases are made from good subjects (``MODIFICATIONS``): an axis reversed (data flipped
along one voxel axis, affine kept), two axes swapped (data transposed, affine kept), a 15 mm
shift of the affine, the voxel size 2× in the affine (about the image's centre), the wrong
subject's image. Whether a case *is* broken is decided by its outcome, not by the label of
the modification: the native labels are compared with the truth labels
(``derivatives/phantom-truth/.../space-individual_atlas-CIT168_dseg``); when the maps' own
voxel data were modified (χ-only and magnitude-path cases modify every file of the subject),
the truth array gets the same modification, so the comparison is voxel by voxel on the data
as stored (a header change leaves the voxels' anatomy where it was). Mean Dice over the 16
nuclei (8 per side) < 0.5, or labels on the wrong side (left labels overlapping the right
truth more than the left), is a failure; ≥ 0.7 is good; in between the case is ambiguous
and left out of the rates.

Rates per contrast path: false rejects (good cases flagged) and false accepts (failed cases
not flagged), with the current limits (``QC_LIMITS`` / ``COREGISTRATION_LIMITS`` /
``LABEL_CONTRAST_LIMITS`` as imported), with and without the label-contrast check —
written to ``benchmarks/results/qc_corpus.json``. Cases are cached one JSON (and their
labels) each in ``benchmarks/results/qc_corpus/`` (a re-run resumes). Runs with
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2`` unless set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import numpy as np  # noqa: E402
from benchutil import cpu_model, loadavg  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CACHE = RESULTS / "qc_corpus"
#: Nucleus → left label indices of the truth dseg (right = left + 10).
GROUPS = {"SN": [1, 2], "RN": [3], "STN": [4], "GPe": [5], "GPi": [6], "Pu": [7], "Ca": [8],
          "Thal": [9]}
GOOD_DICE, FAILED_DICE = 0.7, 0.5
PATHS = ("T1w", "MEGRE", "Chimap")
#: The two phantom datasets of the corpus: name → generate_phantom overrides.
DATASETS = {
    "zero": {"seed": 14, "chi_outside": "zero", "n_subjects": 12},
    "nan": {"seed": 41, "chi_outside": "nan", "n_subjects": 9},
}
#: Modification → (what is changed, description).
MODIFICATIONS = {
    "none": "unmodified",
    "flip0": "voxel axis 0 reversed (data flipped, affine kept)",
    "flip1": "voxel axis 1 reversed (data flipped, affine kept)",
    "flip2": "voxel axis 2 reversed (data flipped, affine kept)",
    "swap01": "voxel axes 0 and 1 swapped (data transposed, affine kept)",
    "swap12": "voxel axes 1 and 2 swapped (data transposed, affine kept)",
    "shift15": "affine translated 15 mm along world y",
    "scale2": "voxel size 2× in the affine (about the image's centre)",
    "wrong": "another subject's image",
}
for _key, _text in list(MODIFICATIONS.items()):
    if _key not in ("none", "wrong"):
        MODIFICATIONS[f"maps-{_key}"] = f"every map file (not the T1w): {_text}"


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------

def build_corpus(workdir: Path, voxel=(3.0, 3.0, 3.5), t1w_voxel=(3.0, 3.0, 3.0),
                 datasets: dict | None = None) -> dict[str, Path]:
    """The phantom datasets of the corpus (generated once): name → BIDS root."""
    from brainiron.phantom import generate_phantom

    roots = {}
    for name, overrides in (datasets or DATASETS).items():
        root = workdir / f"phantom-{name}"
        if not (root / "participants.tsv").exists():
            t = time.perf_counter()
            generate_phantom(root, realism="realistic", image_sets=PATHS, chi_recon="mixed",
                             voxel_size=voxel, t1w_voxel_size=t1w_voxel, **overrides)
            print(f"[phantom] {name}: {time.perf_counter() - t:.0f} s -> {root}", flush=True)
        roots[name] = root
    return roots


def subject_path(index: int) -> str:
    """Contrast path of subject ``index`` (0-based): the phantom cycles ``image_sets``."""
    return PATHS[index % len(PATHS)]


def case_list(datasets: dict | None = None) -> list[dict]:
    """Every case of the corpus: all subjects unmodified, plus the broken ones."""
    datasets = datasets or DATASETS
    cases = []
    for ds, overrides in datasets.items():
        for i in range(overrides["n_subjects"]):
            cases.append({"dataset": ds, "sub": f"{i + 1:02d}", "path": subject_path(i),
                          "modification": "none"})
    # Broken (or suspect) cases: (dataset, subject, modification, other subject for "wrong").
    plan = [
        ("zero", "01", "flip2", None), ("zero", "04", "swap01", None),
        ("zero", "07", "scale2", None), ("zero", "10", "wrong", "04"),
        ("nan", "01", "flip0", None), ("nan", "04", "shift15", None),
        ("zero", "02", "flip2", None), ("zero", "05", "swap12", None),
        ("zero", "08", "wrong", "05"), ("nan", "02", "flip0", None),
        ("zero", "03", "flip1", None), ("zero", "06", "swap01", None),
        ("zero", "09", "flip0", None), ("nan", "03", "shift15", None),
        ("nan", "06", "scale2", None),
        # T1w path, the maps' files modified (the T1w right): a reversed axis is a true
        # failure there (labels on the wrong side), a header shift is recovered.
        ("zero", "10", "maps-flip0", None), ("nan", "07", "maps-shift15", None),
    ]
    for ds, sub, mod, other in plan:
        if ds in datasets and int(sub) <= datasets[ds]["n_subjects"]:
            case = {"dataset": ds, "sub": sub, "path": subject_path(int(sub) - 1),
                    "modification": mod}
            if other:
                case["other"] = other
            cases.append(case)
    return cases


def case_id(case: dict) -> str:
    other = f"-from{case['other']}" if case.get("other") else ""
    return f"{case['dataset']}_sub-{case['sub']}_{case['path']}_{case['modification']}{other}"


def modify(data: np.ndarray, affine: np.ndarray, modification: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Apply a header / data modification (:data:`MODIFICATIONS`) to one image."""
    affine = np.asarray(affine, float).copy()
    if modification.startswith("flip"):
        return np.flip(data, int(modification[-1])).copy(), affine
    if modification.startswith("swap"):
        a, b = int(modification[-2]), int(modification[-1])
        return np.swapaxes(data, a, b).copy(), affine
    if modification == "shift15":
        affine[1, 3] += 15.0
        return data, affine
    if modification == "scale2":
        centre = affine @ np.r_[(np.asarray(data.shape[:3]) - 1) / 2.0, 1.0]
        affine[:3, :3] *= 2.0
        affine[:3, 3] += centre[:3] - (affine @ np.r_[(np.asarray(data.shape[:3]) - 1) / 2.0,
                                                      1.0])[:3]
        return data, affine
    if modification == "none":
        return data, affine
    raise ValueError(f"unknown modification {modification!r}")


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, float)


def _anat(root: Path, sub: str, suffix: str) -> Path:
    return root / f"sub-{sub}" / "anat" / f"sub-{sub}_{suffix}.nii.gz"


def _resampled(data: np.ndarray, affine: np.ndarray, shape, target_affine) -> np.ndarray:
    """An image resampled onto another grid through world coordinates (linear)."""
    import ants

    from brainiron.registration import to_ants
    target = to_ants(np.zeros(shape, np.float32), target_affine)
    return ants.resample_image_to_target(to_ants(data, affine), target,
                                         interp_type="linear").numpy()


def case_inputs(roots: dict[str, Path], case: dict) -> dict:
    """The images of a case as the workflow would read them, and the truth to compare with.

    The T1w path modifies the T1w only (the maps stay right: the truth is unchanged), or with
    ``maps-*`` every map file and not the T1w (the truth follows the maps' voxels); the
    MEGRE and χ paths modify every file of the subject (maps included) except ``wrong``,
    which gives the magnitude path another subject's first echo resampled onto this
    subject's grid (same protocol, another head).
    """
    root, sub, path, mod = roots[case["dataset"]], case["sub"], case["path"], case["modification"]
    truth_file = (root / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat" /
                  f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
    truth, maps_affine = _load(truth_file)
    truth = np.rint(truth).astype(np.int16)
    echo1 = _anat(root, sub, "echo-1_part-mag_MEGRE")
    out = {"contrast": path}
    if path == "T1w":
        t1w_sub = case.get("other", sub) if mod == "wrong" else sub
        t1w, t1w_affine = _load(_anat(root, t1w_sub, "T1w"))
        maps_mod = mod[5:] if mod.startswith("maps-") else "none"
        if mod not in ("wrong",) and maps_mod == "none":
            t1w, t1w_affine = modify(t1w, t1w_affine, mod)
        out.update(image=t1w, affine=t1w_affine)
        out["reference"], out["reference_affine"] = modify(*_load(echo1), maps_mod)
        truth, grid_affine = modify(truth, maps_affine, maps_mod)
        out.update(grid_shape=truth.shape, grid_affine=grid_affine,
                   truth=np.asarray(truth, np.int16), maps=_maps(root, sub, maps_mod))
        return out
    image_file = echo1 if path == "MEGRE" else _anat(root, sub, "Chimap")
    image, affine = _load(image_file)
    if mod == "wrong":
        other, other_affine = _load(echo1.parent.parent.parent / f"sub-{case['other']}" /
                                    "anat" / f"sub-{case['other']}_echo-1_part-mag_MEGRE.nii.gz")
        image = _resampled(other, other_affine, image.shape, affine)
        out.update(image=image, affine=affine, grid_shape=truth.shape, grid_affine=affine,
                   truth=truth, maps=_maps(root, sub, "none"))
        return out
    image, affine = modify(image, affine, mod)
    truth_mod, _ = modify(truth, maps_affine, mod)  # the truth follows the stored voxels
    out.update(image=image, affine=affine, grid_shape=image.shape, grid_affine=affine,
               truth=np.asarray(truth_mod, np.int16), maps=_maps(root, sub, mod))
    return out


def _maps(root: Path, sub: str, modification: str) -> dict[str, np.ndarray]:
    """The subject's χ and R2* maps (those it has), modified like the maps' grid."""
    out = {}
    for kind in ("Chimap", "R2starmap"):
        path = _anat(root, sub, kind)
        if path.exists():
            data, affine = _load(path)
            out[kind] = modify(data, affine, modification)[0]
    return out


# ----------------------------------------------------------------------------------------------
# One case
# ----------------------------------------------------------------------------------------------

def nucleus_dice(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Mean Dice over the 16 nuclei (8 per side), and with the sides exchanged."""
    def dice(a, b):
        s = a.sum() + b.sum()
        return float(2.0 * (a & b).sum() / s) if s else 1.0

    same, crossed = [], []
    for m in GROUPS.values():
        for side, other in ((0, 10), (10, 0)):
            lab = np.isin(labels, [i + side for i in m])
            same.append(dice(lab, np.isin(truth, [i + side for i in m])))
            crossed.append(dice(lab, np.isin(truth, [i + other for i in m])))
    return {"dice_mean": round(float(np.mean(same)), 4),
            "dice_min": round(float(np.min(same)), 4),
            "dice_sides_exchanged": round(float(np.mean(crossed)), 4)}


def outcome(d: dict) -> str:
    """``good``, ``failed`` or ``ambiguous`` from the Dice against the truth."""
    if d["dice_mean"] < FAILED_DICE or d["dice_sides_exchanged"] > d["dice_mean"]:
        return "failed"
    return "good" if d["dice_mean"] >= GOOD_DICE else "ambiguous"


def extra_measures(image: np.ndarray, affine: np.ndarray, reg) -> dict:
    """Candidate QC measures beside :func:`registration_qc`'s (computed here only).

    ``support_inside``: fraction of the subject's own support (χ: its nonzero mask; else the
    foreground) inside the warped template brain — an eroded χ mask stays ~1; and the NMI of
    the image with the warped template inside the warped brain.
    """
    from brainiron import masks, registration
    from brainiron.registration.coregister import normalised_mutual_information

    img = np.nan_to_num(np.asarray(image, np.float32))
    tpl, tpl_affine = registration.template_data(reg.template)
    transforms = registration.forward_warp(reg)
    warped = registration.warp_image(img.shape, affine, np.asarray(tpl), tpl_affine,
                                     transforms, "linear")
    mask, mask_affine = masks.template_brain_mask()
    brain = registration.warp_image(img.shape, affine, mask.astype(np.float32), mask_affine,
                                    transforms, "linear") > 0.5
    support = (masks.chi_brain_mask(img) if reg.template == "chi"
               else masks.foreground_mask(img))
    out = {}
    if support is not None and support.sum():
        out["support_inside"] = round(float((support & brain).sum() / support.sum()), 4)
    if brain.sum() >= 100:
        out["template_nmi"] = round(normalised_mutual_information(img[brain], warped[brain]), 4)
    return out


def run_case(roots: dict[str, Path], case: dict, settings=None
             ) -> tuple[dict, np.ndarray | None]:
    """Register one case the way the workflow does: its QC measures, the registration's
    flags, Dice and outcome; and the native labels (on the maps' grid as modified)."""
    from brainiron import registration

    settings = settings or registration_settings()
    inputs = case_inputs(roots, case)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qccorpus-") as tmp:
        tmp = Path(tmp)
        row: dict = {"case": case_id(case), **case,
                     "description": MODIFICATIONS[case["modification"]]}
        try:
            reg = registration.register(inputs["image"], inputs["affine"], tmp / "reg",
                                        settings, contrast=inputs["contrast"])
        except ValueError as exc:  # e.g. an empty χ map: refused by the workflow too
            return {**row, "error": str(exc), "flagged_registration": True, "flagged": True,
                    "outcome": "failed", "seconds": round(time.perf_counter() - t0, 1)}, None
        qc = {k: reg.qc.get(k) for k in ("ncc", "brain_coverage", "log_jacobian_sd",
                                          "mask_dice", "flag")}
        row["registration_qc"] = qc
        row["extra"] = extra_measures(inputs["image"], inputs["affine"], reg)
        failure = registration.qc_failure(reg, settings)
        row["registration_failure"] = failure or ""
        forward = reg.forward
        coreg_flag = ""
        if inputs["contrast"] == "T1w":
            co = registration.coregister(inputs["image"], inputs["affine"], inputs["reference"],
                                         inputs["reference_affine"], tmp / "coreg", settings,
                                         reference_kind="MEGRE")
            row["coregistration_qc"] = {k: co.qc.get(k) for k in (
                "nmi", "mirror_nmi", "brain_inside", "rotation_deg", "translation_mm", "flag")}
            coreg_flag = co.qc.get("flag", "")
            forward = registration.with_coregistration(reg, co.forward, co.inverse).forward
        labels = registration.warp_labels(inputs["grid_shape"], inputs["grid_affine"],
                                          list(forward))
    row["coregistration_flag"] = coreg_flag
    row["flagged_registration"] = bool(failure or coreg_flag)
    row.update(nucleus_dice(labels, inputs["truth"]))
    row["outcome"] = outcome(row)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row, labels


def decide(row: dict, labels: np.ndarray, maps: dict[str, np.ndarray]) -> dict:
    """The QC decision of a case: the registration's flags, then the labels' contrast.

    ``flagged_registration``: what ``registration.qc_failure`` and the coregistration flag
    said when the case ran (the limits of that run: ``registration_qc.flag_before``);
    ``registration_qc.flag``: the cached measures under the current ``QC_LIMITS``
    (``registration.qc_flag``); ``label_contrast``: ``registration.label_contrast_qc`` on the
    χ map (the workflow's contrast map when the subject has one), with the R2* map's value
    beside it; ``flagged``: the current QC (registration, coregistration, label contrast).
    """
    from brainiron import registration

    row = dict(row)
    q = row["registration_qc"]
    q["flag_before"] = q.get("flag_before", q["flag"])  # the limits of the run
    q["flag"] = registration.qc_flag(q, row["path"])
    row["label_contrast"] = registration.label_contrast_qc(labels, maps["Chimap"], "Chimap")
    if "R2starmap" in maps:
        r2 = registration.label_contrast_qc(labels, maps["R2starmap"], "R2starmap")
        row["label_contrast"]["iron_contrast_r2star"] = r2["iron_contrast"]
        row["label_contrast"]["flag_r2star"] = r2["flag"]
    row["flagged"] = bool(q["flag"] or row["coregistration_flag"]
                          or row["label_contrast"]["flag"])
    return row


def evaluated(roots: dict[str, Path], case: dict) -> dict | None:
    """A cached case with its QC decision (:func:`decide`), or None when not run yet."""
    cid = case_id(case)
    cached = CACHE / f"{cid}.json"
    if not cached.exists():
        return None
    row = json.loads(cached.read_text())
    row.setdefault("flagged_registration", row.pop("flagged", False))
    row.pop("iron_contrast", None)  # an earlier version's record
    if "error" in row:
        return row
    with np.load(CACHE / f"{cid}_labels.npz") as f:
        labels = f["labels"]
    return decide(row, labels, case_inputs(roots, case)["maps"])


def registration_settings():
    import yaml

    from brainiron.registration import RegistrationSettings
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return RegistrationSettings.from_config(cfg["registration"])


# ----------------------------------------------------------------------------------------------
# Rates
# ----------------------------------------------------------------------------------------------

def rates(rows: list[dict], flag_key: str = "flagged") -> dict:
    """False-reject and false-accept counts and rates per contrast path (and overall): with
    every check (``flagged``) and with the registration's own checks only."""
    out = {}
    for path in (*PATHS, "all"):
        sub = [r for r in rows if path in ("all", r["path"])]
        good = [r for r in sub if r["outcome"] == "good"]
        bad = [r for r in sub if r["outcome"] == "failed"]
        ambiguous = [r for r in sub if r["outcome"] == "ambiguous"]
        out[path] = {"n_good": len(good), "n_failed": len(bad), "n_ambiguous": len(ambiguous),
                     "ambiguous_flagged": sum(bool(r[flag_key]) for r in ambiguous)}
        for key, suffix in ((flag_key, ""), ("flagged_registration", "_registration_only")):
            fr = sum(bool(r[key]) for r in good)
            fa = sum(not r[key] for r in bad)
            out[path].update({
                f"false_rejects{suffix}": fr, f"false_accepts{suffix}": fa,
                f"false_reject_rate{suffix}": round(fr / len(good), 3) if good else None,
                f"false_accept_rate{suffix}": round(fa / len(bad), 3) if bad else None})
    return out


def _fmt(x, spec=".3f"):
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def markdown(rows: list[dict], table: dict) -> str:
    lines = ["| path | good | failed | ambiguous (flagged) | false rejects: limits before → "
             "now | false accepts: limits before → now |", "|---|---|---|---|---|---|"]
    for path, r in table.items():
        lines.append(
            f"| {path} | {r['n_good']} | {r['n_failed']} | {r['n_ambiguous']} "
            f"({r['ambiguous_flagged']}) | "
            f"{r['false_rejects_registration_only']} → {r['false_rejects']} | "
            f"{r['false_accepts_registration_only']} → {r['false_accepts']} |")
    lines += ["", "| case | outcome | Dice (sides exchanged) | NCC | coverage | support inside "
              "| log-Jac SD | mask Dice | coreg NMI / mirror / inside | iron contrast χ / R2* "
              "| flag |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q, e, c = r.get("registration_qc", {}), r.get("extra", {}), r.get("coregistration_qc")
        co = (f"{_fmt(c['nmi'])} / {_fmt(c.get('mirror_nmi'))} / {_fmt(c['brain_inside'], '.2f')}"
              if c else "")
        lc = r.get("label_contrast", {})
        flag = "; ".join(f for f in (q.get("flag"), r.get("coregistration_flag"),
                                     lc.get("flag")) if f)
        lines.append(
            f"| {r['case']} | {r['outcome']} | {_fmt(r.get('dice_mean'), '.2f')} "
            f"({_fmt(r.get('dice_sides_exchanged'), '.2f')}) | {_fmt(q.get('ncc'), '.2f')} | "
            f"{_fmt(q.get('brain_coverage'), '.2f')} | {_fmt(e.get('support_inside'), '.2f')} | "
            f"{_fmt(q.get('log_jacobian_sd'), '.2f')} | {_fmt(q.get('mask_dice'), '.2f')} | "
            f"{co} | {_fmt(lc.get('iron_contrast'), '.2f')} / "
            f"{_fmt(lc.get('iron_contrast_r2star'), '.2f')} | "
            f"{flag or r.get('error', '') or '—'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "qc-corpus")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--only", nargs="*", help="case ids (default: all)")
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    cases = case_list()
    if not args.summary_only:
        roots = build_corpus(args.workdir)
        settings = registration_settings()
        # Broken cases first (the design's interesting half), then the good ones.
        order = sorted(cases, key=lambda c: c["modification"] == "none")
        for case in order:
            cid = case_id(case)
            if args.only and cid not in args.only:
                continue
            cached = CACHE / f"{cid}.json"
            if cached.exists():
                continue
            before = loadavg()
            row, labels = run_case(roots, case, settings)
            row["load"] = [before, loadavg()]
            if labels is not None:
                np.savez_compressed(CACHE / f"{cid}_labels.npz", labels=labels)
            cached.write_text(json.dumps(row, indent=1))
            print(f"[case] {cid:<40} {row['outcome']:<9} Dice {row.get('dice_mean')} "
                  f"flagged {row.get('flagged_registration')} {row['seconds']} s  "
                  f"load {before}", flush=True)
    roots = build_corpus(args.workdir)
    rows = [r for r in (evaluated(roots, c) for c in cases) if r is not None]
    table = rates(rows)
    from brainiron.registration import (
        COREGISTRATION_LIMITS,
        LABEL_CONTRAST_LIMITS,
        QC_LIMITS,
    )
    (RESULTS / "qc_corpus.json").write_text(json.dumps({
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model()},
        "qc_limits": QC_LIMITS, "coregistration_limits": COREGISTRATION_LIMITS,
        "label_contrast_limits": LABEL_CONTRAST_LIMITS,
        "good_dice": GOOD_DICE, "failed_dice": FAILED_DICE, "datasets": DATASETS,
        "rates": table, "cases": rows}, indent=1, default=str))
    print(markdown(rows, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
