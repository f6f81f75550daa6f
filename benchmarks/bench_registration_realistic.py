#!/usr/bin/env python
"""Registration on the realistic phantom, per contrast path, brainiron beside the ANTs peers.

Usage::

    python benchmarks/bench_registration_realistic.py                     # build, run, summarise
    python benchmarks/bench_registration_realistic.py --subjects 6 --voxel 2,2,3 --t1w-voxel 1.5
    python benchmarks/bench_registration_realistic.py --summary-only

Phantoms (``brainiron.phantom.generate_phantom``, ``realism="realistic"``, generated once in
``--workdir``): dataset ``A`` (seed 14, ``image_sets=("T1w", "MEGRE", "Chimap")``,
``chi_recon="mixed"``, χ NaN outside its eroded mask) gives the **T1w** subjects (T1w on its
own sagittal grid with head motion, plus χ, R2* and MEGRE on the maps' grid) and the
**χ-only** subjects; dataset ``B`` (seed 15, ``image_sets=("MEGRE",)``, ``with_chimap=False``)
gives the **magnitude-only** subjects (MEGRE echoes and an R2* map, no χ: registered on the
first-echo magnitude, no χ local stage). The images of a subject are chosen by
``brainiron.bids.discover`` → ``Subject.plan`` (what the workflow's rules read).

Methods (each run its own subprocess, one at a time, ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2``,
``ants.config._random_seed = 42``):

* ``brainiron``: what the ``coregister`` and ``register`` rules run, as library calls —
  ``registration.coregister`` (T1w → first-echo magnitude; T1w path only),
  ``registration.register`` (the plan's registration image and contrast, ``config.yaml``
  settings), ``with_coregistration``, ``contrast_local_stage`` (χ for a T1w or
  magnitude subject with a χ map, R2* for a magnitude-only one; a T1w so refined skips its
  own local stage), ``native_atlas`` (labels on the maps' grid, dentate segmented);
* ``quick_s`` = ``ants.registration(type_of_transform="antsRegistrationSyNQuick[s]")`` and
  ``syn_s`` = ``"antsRegistrationSyN[s]"``: fixed = the image brainiron registers (as
  ``registration_input`` prepares it: NaN → 0), moving = the template brainiron uses for that
  contrast at 1 mm (MNI152NLin2009cAsym T1 for T1w and magnitude; brainiron's χ-contrast
  template, unblurred, for χ-only); the template labels (``atlas.template_labels``, no dentate)
  are pulled onto the maps' grid with ``genericLabel`` through the peer's transforms, for the
  T1w path composed with brainiron's coregistration (computed in the same run, its time
  counted). No χ local stage for the peers.

Metrics per run: Dice of every nucleus and side against the truth labels
(``derivatives/phantom-truth/.../space-individual_atlas-CIT168_dseg``); mean and worst over
SN (SNc_PBP_VTA + SNr), RN, STN, GPe, GPi, Pu, Ca, Thal × L/R (``dice_mean16`` /
``dice_worst16``, the common set), and for brainiron also with DN (``dice_mean18``);
regional means of the subject's χ map (R2* for magnitude-only) over the method's labels vs
over the truth labels on the same map, |error| in % of the truth-label mean, median over
SN, RN, STN, GPe, GPi, Pu, Ca × L/R (Thal left out: its χ is ~0); wall time of the whole
method (coregistration included) and peak RSS of the worker (``ru_maxrss``). Load averages
before and after every run. Runs are interleaved (subject k of every path with every method,
then subject k + 1). Rows are appended to ``benchmarks/results/registration_realistic_runs.csv``
after each run (a re-run skips what is there); the summary goes to
``registration_realistic_summary.csv`` and ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import numpy as np  # noqa: E402
from benchutil import cpu_model, run_recorded_job  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RUNS_CSV = RESULTS / "registration_realistic_runs.csv"
SEED = 42
NUCLEI = ("SN", "RN", "STN", "GPe", "GPi", "Pu", "Ca", "Thal")
ERROR_NUCLEI = ("SN", "RN", "STN", "GPe", "GPi", "Pu", "Ca")
PATHS = ("T1w", "MEGRE", "Chimap")
PATH_NAMES = {"T1w": "T1w (own grid, coregistered)", "MEGRE": "magnitude-only",
              "Chimap": "χ-only"}
METHODS = ("brainiron", "quick_s", "syn_s")
PEER_TRANSFORM = {"quick_s": "antsRegistrationSyNQuick[s]", "syn_s": "antsRegistrationSyN[s]"}
TARGETS = {"T1w": (0.90, 0.80), "MEGRE": (0.85, 0.75), "Chimap": (0.85, 0.75)}
DATASETS = {
    "A": {"seed": 14, "image_sets": ("T1w", "MEGRE", "Chimap"), "chi_recon": "mixed",
          "chi_outside": "nan"},
    "B": {"seed": 15, "image_sets": ("MEGRE",), "with_chimap": False},
}


def subject_of(path: str, k: int) -> tuple[str, str]:
    """(dataset, subject label) of the ``k``-th (0-based) subject of a contrast path."""
    if path == "MEGRE":
        return "B", f"{k + 1:02d}"
    return "A", f"{3 * k + PATHS.index(path) + 1:02d}"


def build(workdir: Path, n: int, voxel: tuple, t1w_voxel: float) -> dict[str, Path]:
    from brainiron.phantom import generate_phantom

    roots = {}
    for name, kw in DATASETS.items():
        root = workdir / f"phantom-{name}"
        n_sub = 3 * n if name == "A" else n
        if not (root / "participants.tsv").exists():
            t = time.perf_counter()
            generate_phantom(root, realism="realistic", n_subjects=n_sub, voxel_size=voxel,
                             t1w_voxel_size=t1w_voxel, **kw)
            print(f"[phantom] {name}: {n_sub} subjects in {time.perf_counter() - t:.0f} s",
                  flush=True)
        roots[name] = root
    return roots


def registration_settings():
    import yaml

    from brainiron.registration import RegistrationSettings
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return RegistrationSettings.from_config(cfg["registration"])


# ----------------------------------------------------------------------------------------------
# Worker (one run in its own process)
# ----------------------------------------------------------------------------------------------

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _plan(root: Path, sub: str, deriv: Path):
    from brainiron.bids import discover

    ds = discover(root, participant_label=[sub])
    subject = next(s for s in ds.subjects if s.participant_id == f"sub-{sub}")
    return subject.plan(["Chimap", "R2starmap"], deriv)


def dice_table(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from brainiron import atlas

    members = atlas.composite_members()
    out = {}
    for region in (*NUCLEI, "DN"):
        for hemi in "LR":
            a, b = np.isin(labels, members[(region, hemi)]), np.isin(truth, members[(region, hemi)])
            s = a.sum() + b.sum()
            out[f"{region}_{hemi}"] = float(2 * (a & b).sum() / s) if s else float("nan")
    return out


def regional_errors(labels: np.ndarray, truth: np.ndarray, values: np.ndarray) -> dict:
    """|mean over the labels − mean over the truth labels| / |truth mean| (%), same map."""
    from brainiron import atlas

    members = atlas.composite_members()
    finite = np.isfinite(values)
    out = {}
    for region in (*ERROR_NUCLEI, "DN"):
        for hemi in "LR":
            est = np.isin(labels, members[(region, hemi)]) & finite
            tru = np.isin(truth, members[(region, hemi)]) & finite
            if est.sum() == 0 or tru.sum() == 0:
                out[f"{region}_{hemi}"] = float("nan")
                continue
            m_true = float(values[tru].mean())
            out[f"{region}_{hemi}"] = 100.0 * abs(float(values[est].mean()) - m_true) / abs(
                m_true)
    return out


def run_worker(spec: dict) -> dict:
    import ants

    from brainiron import atlas, registration
    from brainiron.io import load_nifti

    ants.config._random_seed = SEED
    root, sub, method, path = Path(spec["root"]), spec["sub"], spec["method"], spec["path"]
    settings = registration_settings()
    truth_file = (root / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat" /
                  f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
    truth, truth_img = load_nifti(truth_file)
    truth = np.rint(truth).astype(np.int16)
    shape, affine = truth.shape, np.asarray(truth_img.affine, float)
    with tempfile.TemporaryDirectory(prefix="benchregreal-") as tmp:
        tmp = Path(tmp)
        plan = _plan(root, sub, tmp / "deriv")
        if plan.registration_kind != path:
            raise RuntimeError(f"sub-{sub}: plan registers {plan.registration_kind}, not {path}")
        image, img = load_nifti(plan.registration_image)
        values, _ = load_nifti(plan.contrast_image)
        kind = plan.contrast_kind
        info: dict = {"contrast_kind": kind}
        base_rss = _rss_mb()
        t0 = time.perf_counter()
        co = None
        if plan.coregistration_image:
            ref, ref_img = load_nifti(plan.coregistration_image)
            co = registration.coregister(image, img.affine, ref, ref_img.affine, tmp / "coreg",
                                         settings, reference_kind=plan.coregistration_kind)
            info["coregistration_flag"] = co.qc.get("flag", "")
        t_coreg = time.perf_counter() - t0
        if method == "brainiron":
            # As steps/register.py: the contrast map's local stage replaces a T1w's own.
            refine = registration.refines_on_contrast(path, kind, settings)
            first = registration.global_stage_settings(path, kind, settings)
            reg = registration.register(image, img.affine, tmp / "reg", first, contrast=path)
            info["qc_failure"] = registration.qc_failure(reg, settings) or ""
            if co is not None:
                reg = registration.with_coregistration(reg, co.forward, co.inverse)
            if refine:
                reg = registration.contrast_local_stage(reg, values, kind, shape, affine, tmp,
                                                        settings)
                stage = registration.LOCAL_TEMPLATES[kind] + "_local_stage"
                info[stage] = str(reg.qc.get(stage))[:80]
            labels = registration.native_atlas(reg, shape, affine, values, kind, tmp).labels
        else:
            template = "chi" if registration.uses_chi_template(path, settings) else "T1w"
            fixed_data, _ = registration.registration_input(image, path, template)
            fixed = registration.to_ants(np.asarray(fixed_data, np.float32), img.affine)
            tpl, tpl_affine = registration.template_data(template)
            moving = registration.to_ants(np.asarray(tpl, np.float32), tpl_affine)
            out = ants.registration(fixed, moving, type_of_transform=PEER_TRANSFORM[method],
                                    outprefix=str(tmp / "peer_"))
            chain = list(out["fwdtransforms"])
            if co is not None:
                chain = [co.forward, *chain]  # a maps-grid point: coregistration first
            lab = atlas.template_labels()
            grid = registration.to_ants(np.zeros(shape, np.float32), affine)
            labels = ants.apply_transforms(
                grid, registration.to_ants(np.asarray(lab.data, np.float32), lab.affine),
                chain, interpolator="genericLabel").numpy()
            labels = np.rint(labels).astype(np.int16)
            info["template"] = template
        seconds = time.perf_counter() - t0
        peak = _rss_mb()
    values = np.asarray(values, np.float32)
    dice, errors = dice_table(labels, truth), regional_errors(labels, truth, values)
    if method != "brainiron":  # the template labels have no dentate
        for h in "LR":
            dice[f"DN_{h}"] = errors[f"DN_{h}"] = float("nan")
    return {"dice": dice, "error_pct": errors,
            "seconds": round(seconds, 2), "coreg_s": round(t_coreg, 2),
            "peak_rss_mb": round(peak, 1), "base_rss_mb": round(base_rss, 1),
            "shape": list(shape), "registration_shape": list(image.shape), "info": info,
            "threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

#: The line printed for a run (benchutil.run_recorded_job).
RUN_LINE = ("[run] {spec[path]:<6} sub-{spec[sub]} {spec[method]:<9} {row[seconds]:6.1f} s"
            " peak {row[peak_rss_mb]:5.0f} MB  Dice {row[dice_mean16]:.3f} / "
            "{row[dice_worst16]:.3f}  err {row[err_median_pct]:.1f} %  load {row[load_before]}")


def flatten(spec: dict, res: dict, wall: float, before: str, after: str) -> dict:
    dice, err = res["dice"], res["error_pct"]
    common = [dice[f"{r}_{h}"] for r in NUCLEI for h in "LR"]
    with_dn = common + [dice[f"DN_{h}"] for h in "LR"]
    errors = [err[f"{r}_{h}"] for r in ERROR_NUCLEI for h in "LR"]
    row = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
           "path": spec["path"], "dataset": spec["dataset"], "sub": spec["sub"],
           "method": spec["method"], "voxel_mm": spec["voxel"], "t1w_voxel_mm": spec["t1w_voxel"],
           "dice_mean16": round(float(np.nanmean(common)), 4),
           "dice_worst16": round(float(np.nanmin(common)), 4),
           "dice_mean18": (round(float(np.nanmean(with_dn)), 4)
                           if not np.isnan(with_dn[-2:]).any() else ""),
           "dice_worst18": (round(float(np.nanmin(with_dn)), 4)
                            if not np.isnan(with_dn[-2:]).any() else ""),
           "err_median_pct": round(float(np.nanmedian(errors)), 3),
           "err_max_pct": round(float(np.nanmax(errors)), 3),
           "seconds": res["seconds"], "coreg_s": res["coreg_s"],
           "process_wall_s": round(wall, 1), "peak_rss_mb": res["peak_rss_mb"],
           "base_rss_mb": res["base_rss_mb"]}
    row.update({f"dice_{k}": round(v, 4) for k, v in dice.items()})
    row.update({f"err_{k}": round(v, 3) for k, v in err.items()})
    row.update({"shape": "x".join(map(str, res["shape"])),
                "registration_shape": "x".join(map(str, res["registration_shape"])),
                "threads": res["threads"], "load_before": before, "load_after": after,
                "info": json.dumps(res["info"])})
    return row


def done_runs() -> set[tuple[str, str, str]]:
    if not RUNS_CSV.exists():
        return set()
    with open(RUNS_CSV) as fh:
        return {(r["path"], r["sub"], r["method"]) for r in csv.DictReader(fh)}


def run_times() -> dict[tuple[str, str], list[float]]:
    """Wall times (s) of the runs so far in the runs CSV: (path, method) → list."""
    out: dict[tuple[str, str], list[float]] = {}
    if RUNS_CSV.exists():
        with open(RUNS_CSV) as fh:
            for r in csv.DictReader(fh):
                out.setdefault((r["path"], r["method"]), []).append(float(r["process_wall_s"]))
    return out


def fits(later: list, path: str, method: str, deadline: str, optional: str) -> bool:
    """Whether an optional run (``--optional``, e.g. SyN[s]) still fits before ``deadline``
    (HH:MM UTC) with every later non-optional run: each costed at the median of that path and
    method's runs in the CSV, else the slowest median of that method on another path, else
    120 s."""
    times = run_times()

    def cost(p, m):
        if times.get((p, m)):
            return float(np.median(times[(p, m)]))
        other = [float(np.median(v)) for (_, mm), v in times.items() if mm == m]
        return max(other) if other else 120.0
    now = time.gmtime()
    hh, mm = (int(v) for v in deadline.split(":"))
    left = (hh * 60 + mm) * 60 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    needed = cost(path, method) + sum(cost(p, m) for _, p, m in later if m not in optional)
    return needed <= left


def summarise() -> str:
    """Per path and method: subjects, mean over subjects of the mean Dice, worst Dice of all
    subjects (and the mean of the subjects' worst), median |error|, median and max time and
    peak RSS; plus the per-nucleus mean Dice."""
    import pandas as pd
    if not RUNS_CSV.exists():
        return "(no runs)"
    import warnings
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-NaN DN of the peers
    df = pd.read_csv(RUNS_CSV, dtype={"sub": str})
    rows = []
    for (path, method), g in df.groupby(["path", "method"], sort=False):
        own = df[(df.path == path) & (df.method == "brainiron") & df["sub"].isin(g["sub"])]
        r = {"path": path, "method": method, "subjects": len(g),
             "brainiron_same_subjects": own.dice_mean16.mean(),
             "dice_mean": g.dice_mean16.mean(), "dice_worst": g.dice_worst16.min(),
             "dice_worst_mean": g.dice_worst16.mean(),
             "dice_mean18": pd.to_numeric(g.dice_mean18, errors="coerce").mean(),
             "dice_worst18": pd.to_numeric(g.dice_worst18, errors="coerce").min(),
             "err_median_pct": g.err_median_pct.median(), "err_max_pct": g.err_max_pct.max(),
             "seconds_median": g.seconds.median(), "seconds_max": g.seconds.max(),
             "rss_median_mb": g.peak_rss_mb.median(), "rss_max_mb": g.peak_rss_mb.max(),
             "load_1min": ", ".join(sorted({s.split()[0] for s in g.load_before}))}
        for n in (*NUCLEI, "DN"):
            r[f"dice_{n}"] = float(np.nanmean(g[[f"dice_{n}_L", f"dice_{n}_R"]].to_numpy()))
            r[f"dice_{n}_min"] = float(np.nanmin(g[[f"dice_{n}_L", f"dice_{n}_R"]].to_numpy()))
        rows.append(r)
    summary = pd.DataFrame(rows)
    order = {p: i for i, p in enumerate(PATHS)}
    summary = summary.sort_values(["path", "method"], key=lambda s: s.map(
        lambda v: order.get(v, METHODS.index(v) if v in METHODS else 9))).reset_index(drop=True)
    stem = RUNS_CSV.stem.replace("_runs", "_summary")
    summary.to_csv(RUNS_CSV.with_name(f"{stem}.csv"), index=False)
    RUNS_CSV.with_name(f"{stem}.json").write_text(json.dumps({
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(),
                    "python": platform.python_version()},
        "rows": summary.to_dict("records")}, indent=1, default=str))
    lines = ["| path | method | subjects | Dice mean / worst (16) | mean of worst | brainiron, "
             "same subjects | with DN (18) | median \\|error\\| (%) | time median / max (s) | "
             "peak RSS median / max (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        dn = (f"{r.dice_mean18:.3f} / {r.dice_worst18:.3f}"
              if not np.isnan(r.dice_mean18) else "—")
        lines.append(f"| {PATH_NAMES.get(r.path, r.path)} | {r.method} | {r.subjects} | "
                     f"{r.dice_mean:.3f} / {r.dice_worst:.3f} | {r.dice_worst_mean:.3f} | "
                     f"{r.brainiron_same_subjects:.3f} | {dn} | {r.err_median_pct:.1f} | "
                     f"{r.seconds_median:.0f} / {r.seconds_max:.0f} | "
                     f"{r.rss_median_mb:.0f} / {r.rss_max_mb:.0f} |")
    lines += ["", "| path | method | " + " | ".join(f"{n} mean (min)" for n in (*NUCLEI, "DN"))
              + " |", "|---" * (len(NUCLEI) + 3) + "|"]
    for r in summary.itertuples():
        cells = []
        for n in (*NUCLEI, "DN"):
            m, lo = getattr(r, f"dice_{n}"), getattr(r, f"dice_{n}_min")
            cells.append("—" if np.isnan(m) else f"{m:.2f} ({lo:.2f})")
        lines.append(f"| {PATH_NAMES.get(r.path, r.path)} | {r.method} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "bench-registration-realistic")
    ap.add_argument("--subjects", type=int, default=6, help="subjects per contrast path")
    ap.add_argument("--voxel", default="2,2,3", help="maps' voxel size (mm)")
    ap.add_argument("--t1w-voxel", type=float, default=1.5, help="T1w voxel size (mm)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--deadline", default="23:59", help="HH:MM UTC: optional runs must fit")
    ap.add_argument("--optional", default="syn_s",
                    help="methods skipped when they would not fit before --deadline")
    ap.add_argument("--tag", default="", help="results file suffix (trial runs)")
    args = ap.parse_args(argv)
    global RUNS_CSV
    if args.tag:
        RUNS_CSV = RESULTS / f"registration_realistic_runs_{args.tag}.csv"
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if not args.summary_only:
        voxel = tuple(float(v) for v in args.voxel.split(","))
        roots = build(args.workdir, args.subjects, voxel, args.t1w_voxel)
        done, paths = done_runs(), args.paths.split(",")
        jobs = [(k, path, method) for k in range(args.subjects) for path in paths
                for method in args.methods.split(",")]
        for i, (k, path, method) in enumerate(jobs):
            dataset, sub = subject_of(path, k)
            if (path, sub, method) in done:
                continue
            if method in args.optional and not fits(jobs[i + 1:], path, method, args.deadline,
                                                    args.optional):
                print(f"[skip] {path} sub-{sub} {method}: would not fit before "
                      f"{args.deadline} UTC", flush=True)
                continue
            spec = {"root": str(roots[dataset]), "dataset": dataset, "sub": sub,
                    "path": path, "method": method, "voxel": args.voxel,
                    "t1w_voxel": args.t1w_voxel}
            run_recorded_job(__file__, spec, flatten, RUNS_CSV, RUN_LINE)
    print(summarise())
    return 0


if __name__ == "__main__":
    sys.exit(main())
