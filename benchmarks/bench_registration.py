#!/usr/bin/env python
"""Registration: brainiron's default against the ANTsPy peers, side by side in one run.

Usage::

    python benchmarks/bench_registration.py                   # 2 mm x 3 runs, then 1 mm x 1
    python benchmarks/bench_registration.py --res 2 --runs 3 --methods brainiron,syn
    python benchmarks/bench_registration.py --summary-only    # tables from the raw CSV
    python benchmarks/bench_registration.py --res 2 --phantom-seeds 0 1 2   # 3 subjects
    python benchmarks/bench_registration.py --res 1 --methods brainiron \
        --set local_iterations=20,5 --set local_margin_mm=8    # a variant of the default

On one phantom subject per resolution (``brainiron.phantom.generate_phantom``, T1w only,
``seed=0``, oblique grid: random rotation ±10°, shift ±10 mm, scaling ±5 %, smooth
displacement up to 5 mm, bias field, noise), the subject's T1w is the fixed image and the
MNI152NLin2009cAsym T1 template the moving one. Methods:

* ``brainiron``: ``brainiron.registration.register`` (T1w) with the settings of
  ``config/config.yaml`` → ``registration`` (what the workflow's ``register`` rule runs, QC and
  the composed forward field included), then ``warp_labels`` (genericLabel);
* ``syn``: ``ants.registration(type_of_transform="SyN")`` (ANTsPy defaults);
* ``quick_s``: ``type_of_transform="antsRegistrationSyNQuick[s]"``;
* ``syn_s``: ``type_of_transform="antsRegistrationSyN[s]"``;

for the peers the template labels (``brainiron.atlas.template_labels``) are pulled onto the
T1w grid with ``ants.apply_transforms(..., interpolator="genericLabel")``. Every run is its
own subprocess (one at a time) with ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2`` and
``ants.config._random_seed = 42`` (ANTsPy ignores a ``random_seed=`` argument).

Measured per run: wall time of the registration call and of the label warp; peak RSS of the
worker (``ru_maxrss``, read right after the label warp, before the accuracy metrics); Dice per
nucleus (SN = SNc_PBP_VTA + SNr, RN, STN, GPe, GPi, Pu, Ca, Thal; left and right averaged)
against ``derivatives/phantom-truth``'s dseg; and the mean displacement error (TRE, mm) against
the phantom's known mapping ``x_MNI = A·(x + u(x))`` over the truth voxels of the nuclei
(estimated mapping: the template's world-coordinate images pulled through the same
transforms, linear interpolation). Load averages before/after each run are recorded.

Runs are interleaved (rep 1 of every method on every phantom subject, then rep 2, ...), so
a change in the machine's load hits every method alike. ``--phantom-seeds`` adds phantom
subjects (one per seed: another deformation and noise); the summary takes the median of a
subject's runs, then the mean over subjects (time and memory: the median of all runs).
``--set KEY=VALUE`` overrides a ``RegistrationSettings`` field for the brainiron runs, which
are then labelled ``brainiron[KEY=VALUE ...]``. Raw rows are appended to
``benchmarks/results/registration_runs.csv`` after each run; the medians to
``registration_summary.csv`` at the end (or with ``--summary-only``). The ``*_v1`` files
hold the runs of the previous default and the sweep that replaced it (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import numpy as np  # noqa: E402
from benchutil import cpu_model, run_recorded_job  # noqa: E402

# Dice and the phantom's true voxel -> MNI mapping, as in the exploration that chose the
# defaults (same folder: this script and its workers run with it on sys.path).
from registration_explore import (  # noqa: E402
    _dice_by_group,
    _rss_mb,
    _template_coordinates,
    _true_mni,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RUNS_CSV = RESULTS / "registration_runs.csv"
SEED = 42
# Nucleus → left label indices (right = left + 10), brainiron's template labels = truth dseg.
GROUPS = {"SN": [1, 2], "RN": [3], "STN": [4], "GPe": [5], "GPi": [6], "Pu": [7], "Ca": [8],
          "Thal": [9]}
SMALL = ("SN", "RN", "STN")
METHODS = {
    "brainiron": "brainiron register (config.yaml defaults) + warp_labels",
    "syn": 'ants.registration(type_of_transform="SyN") defaults',
    "quick_s": "antsRegistrationSyNQuick[s]",
    "syn_s": "antsRegistrationSyN[s]",
}
PEER_TRANSFORM = {"syn": "SyN", "quick_s": "antsRegistrationSyNQuick[s]",
                  "syn_s": "antsRegistrationSyN[s]"}


def machine() -> dict:
    import ants
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "antspyx": ants.__version__, "numpy": np.__version__}


def registration_settings():
    import yaml

    from brainiron.registration import RegistrationSettings
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return RegistrationSettings.from_config(cfg["registration"])


# ----------------------------------------------------------------------------------------------
# Worker (one run in its own process)
# ----------------------------------------------------------------------------------------------

def run_worker(spec: dict) -> dict:
    import ants
    import nibabel as nib

    from brainiron import atlas, registration
    from brainiron.io import load_nifti

    ants.config._random_seed = SEED
    root, sub, method = Path(spec["root"]), spec["sub"], spec["method"]
    t1w = root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
    truth_img = nib.load(root / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat" /
                         f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
    truth = np.asarray(truth_img.dataobj).astype(np.int16)
    tpl_ref = atlas.load_reference("template")
    labels_ref = atlas.template_labels()
    with tempfile.TemporaryDirectory(prefix="benchreg-") as tmp:
        tmp = Path(tmp)
        image, img = load_nifti(t1w)
        affine = img.affine
        fixed = registration.to_ants(np.asarray(image, np.float32), affine)
        info: dict = {}
        if method == "brainiron":
            settings = registration_settings()
            if spec.get("overrides"):
                settings = dataclasses.replace(settings, **spec["overrides"])
            base_rss = _rss_mb()
            t0 = time.perf_counter()
            reg = registration.register(image, affine, tmp / "reg", settings,
                                        contrast="T1w")
            t_reg = time.perf_counter() - t0
            t1 = time.perf_counter()
            warped = registration.warp_labels(image.shape, affine, reg.forward)
            t_apply = time.perf_counter() - t1
            transforms = list(reg.forward)
            info = {k: reg.qc.get(k) for k in ("global_seconds", "local_seconds", "seconds",
                                                 "ncc", "log_jacobian_sd", "local_box_shape")}
            info["settings"] = registration.settings_dict(settings)
        else:
            moving = registration.to_ants(np.asarray(tpl_ref.data, np.float32), tpl_ref.affine)
            labels_img = registration.to_ants(np.asarray(labels_ref.data, np.float32),
                                              labels_ref.affine)
            base_rss = _rss_mb()
            t0 = time.perf_counter()
            reg = ants.registration(fixed, moving, type_of_transform=PEER_TRANSFORM[method],
                                    outprefix=str(tmp / "peer_"))
            t_reg = time.perf_counter() - t0
            t1 = time.perf_counter()
            warped = ants.apply_transforms(fixed, labels_img, reg["fwdtransforms"],
                                           interpolator="genericLabel").numpy()
            t_apply = time.perf_counter() - t1
            transforms = list(reg["fwdtransforms"])
        peak = _rss_mb()
        w = np.rint(warped).astype(np.int16)
        if w.shape != truth.shape:
            raise RuntimeError(f"warped labels {w.shape} vs truth {truth.shape}")
        dice = _dice_by_group(w, truth, GROUPS)
        # Displacement error: estimated MNI coordinate of each native voxel vs the true one.
        tpl_aff = tpl_ref.affine
        coords = _template_coordinates(tpl_aff, tpl_ref.data.shape)
        est = np.stack([ants.apply_transforms(fixed, registration.to_ants(c, tpl_aff),
                                              transforms, interpolator="linear").numpy()
                        for c in coords])
        del coords
        true = _true_mni(root, sub, truth.shape, truth_img.affine)
        err = np.linalg.norm(est - true, axis=0)
        tre = {}
        for g, m in GROUPS.items():
            tre[g] = float(err[np.isin(truth, m + [i + 10 for i in m])].mean())
        small = np.isin(truth, [i + o for g in SMALL for i in GROUPS[g] for o in (0, 10)])
        tre["small"] = float(err[small].mean())
        tre["all"] = float(err[(truth > 0) & (truth != 10) & (truth != 20)].mean())
    return {"dice": dice, "tre_mm": tre, "reg_s": round(t_reg, 2),
            "apply_s": round(t_apply, 2), "peak_rss_mb": round(peak, 1),
            "base_rss_mb": round(base_rss, 1),
            "labels_sha256": hashlib.sha256(w.tobytes()).hexdigest()[:16],
            "shape": list(truth.shape), "info": info,
            "threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def ensure_phantom(workdir: Path, res: float, seed: int = 0) -> Path:
    from brainiron.phantom import generate_phantom
    root = workdir / (f"phantom-{res:g}mm" if seed == 0 else f"phantom-{res:g}mm-seed{seed}")
    if not (root / "participants.tsv").exists():
        t = time.perf_counter()
        generate_phantom(root, n_subjects=1, seed=seed, voxel_size=(res,) * 3,
                         orientation="oblique", with_megre=False, with_chimap=False,
                         with_r2starmap=False)
        print(f"[phantom] {res:g} mm in {time.perf_counter() - t:.1f} s -> {root}", flush=True)
    return root


#: The line printed for a run (benchutil.run_recorded_job).
RUN_LINE = ("[run] {spec[res]:g} mm seed {row[phantom_seed]} rep {spec[rep]} "
            "{row[method]:<9} reg {row[reg_s]:7.1f} s + apply {row[apply_s]:5.1f} s  "
            "peak {row[peak_rss_mb]:6.0f} MB  SN {row[dice_SN]:.3f} RN {row[dice_RN]:.3f} "
            "STN {row[dice_STN]:.3f}  TRE small {row[tre_small_mm]:.2f} mm  "
            "load {row[load_before]} -> {row[load_after]}")


def flatten(spec: dict, res: dict, wall: float, before: str, after: str) -> dict:
    row = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
           "res_mm": spec["res"], "phantom_seed": spec.get("phantom_seed", 0),
           "rep": spec["rep"],
           "method": spec.get("label", spec["method"]),
           "reg_s": res["reg_s"], "apply_s": res["apply_s"],
           "total_s": round(res["reg_s"] + res["apply_s"], 2),
           "process_wall_s": round(wall, 1), "peak_rss_mb": res["peak_rss_mb"],
           "base_rss_mb": res["base_rss_mb"]}
    for g in GROUPS:
        row[f"dice_{g}"] = round(res["dice"][g], 4)
    row["dice_small_mean"] = round(float(np.mean([res["dice"][g] for g in SMALL])), 4)
    row["dice_mean8"] = round(float(np.mean([res["dice"][g] for g in GROUPS])), 4)
    row["tre_small_mm"] = round(res["tre_mm"]["small"], 3)
    row["tre_all_mm"] = round(res["tre_mm"]["all"], 3)
    for g in GROUPS:
        row[f"tre_{g}_mm"] = round(res["tre_mm"][g], 3)
    for g in GROUPS:
        row[f"dice_{g}_L"] = round(res["dice"][f"{g}_L"], 4)
        row[f"dice_{g}_R"] = round(res["dice"][f"{g}_R"], 4)
    row.update({"labels_sha256": res["labels_sha256"], "shape": "x".join(map(str, res["shape"])),
                "threads": res["threads"], "seed": SEED, "load_before": before,
                "load_after": after, "info": json.dumps(res["info"])})
    return row


def summarise() -> str:
    """Medians over the runs of each phantom subject, then the mean over subjects (Dice, TRE);
    time and memory: the median over all runs. Plus a per-subject table of SN/RN/STN."""
    import pandas as pd
    if not RUNS_CSV.exists():
        return "(no runs)"
    df = pd.read_csv(RUNS_CSV)
    if "phantom_seed" not in df:
        df["phantom_seed"] = 0
    acc = ["dice_small_mean", *[f"dice_{g}" for g in GROUPS], "tre_small_mm", "tre_all_mm"]
    keys = ["res_mm", "method"]
    per_subject = df.groupby([*keys, "phantom_seed"])[acc].median().reset_index()
    agg = per_subject.groupby(keys)[acc].mean()
    cost = df.groupby(keys)[["total_s", "reg_s", "peak_rss_mb"]].median()
    agg = cost.join(agg)
    agg.insert(0, "runs", df.groupby(keys).size())
    agg.insert(1, "subjects", df.groupby(keys)["phantom_seed"].nunique())
    distinct = df.groupby([*keys, "phantom_seed"])["labels_sha256"].nunique()
    agg.insert(2, "max_distinct_labels_per_subject", distinct.groupby(keys).max())
    agg = agg.reset_index()
    agg.to_csv(RESULTS / "registration_summary.csv", index=False)
    lines = []
    for res_mm, sub in agg.groupby("res_mm", sort=False):
        ref = sub[sub.method == "syn_s"]
        lines.append(f"\n{res_mm:g} mm")
        lines.append("| method | runs | subjects | time (s) | peak RSS (MB) | " +
                     " | ".join(GROUPS) + " | TRE small / all (mm) | time / SyN[s] |")
        lines.append("|---" * (len(GROUPS) + 7) + "|")
        for _, r in sub.iterrows():
            ratio = (f"{r.total_s / ref.total_s.iloc[0]:.3f}" if len(ref) else "n/a")
            lines.append(f"| {r.method} | {r.runs} | {r.subjects} | {r.total_s:.1f} | "
                         f"{r.peak_rss_mb:.0f} | " +
                         " | ".join(f"{r[f'dice_{g}']:.3f}" for g in GROUPS) +
                         f" | {r.tre_small_mm:.2f} / {r.tre_all_mm:.2f} | {ratio} |")
        ps = per_subject[per_subject.res_mm == res_mm]
        if ps.phantom_seed.nunique() > 1:
            lines.append(f"\n{res_mm:g} mm, per phantom subject (median of its runs): "
                         "SN / RN / STN Dice")
            lines.append("| method | " + " | ".join(
                f"seed {k}" for k in sorted(ps.phantom_seed.unique())) + " |")
            lines.append("|---" * (ps.phantom_seed.nunique() + 1) + "|")
            for method, m in ps.groupby("method", sort=False):
                cells = [f"{r.dice_SN:.3f} / {r.dice_RN:.3f} / {r.dice_STN:.3f}"
                         for _, r in m.sort_values("phantom_seed").iterrows()]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    return text


def parse_overrides(items: list[str]) -> dict:
    """``["local_iterations=20,10", "local_margin_mm=8"]`` → RegistrationSettings fields."""
    from brainiron.registration import RegistrationSettings
    fields = {f.name: f for f in dataclasses.fields(RegistrationSettings)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: unknown setting {key!r}; known: {sorted(fields)}")
        default = getattr(RegistrationSettings(), key)
        if isinstance(default, tuple):
            out[key] = tuple(int(v) for v in value.split(",") if v)
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        else:
            out[key] = type(default)(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--res", type=float, nargs="+", default=[2.0, 1.0])
    ap.add_argument("--runs", type=int, nargs="+", default=None,
                    help="runs per method at each --res (default: 3 at 2 mm, 1 at 1 mm)")
    ap.add_argument("--methods", default="brainiron,syn,quick_s,syn_s",
                    help="comma-separated, in run order (default: %(default)s)")
    ap.add_argument("--start-rep", type=int, default=0)
    ap.add_argument("--phantom-seeds", type=int, nargs="+", default=[0],
                    help="one phantom subject per seed (different deformation, noise); "
                         "default: %(default)s")
    ap.add_argument("--workdir", type=Path,
                    default=Path(os.environ.get("TMPDIR", "/tmp")) / "brainiron-bench-reg")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a brainiron registration setting (repeatable), e.g. "
                         "--set local_iterations=20,10; the run is labelled "
                         "brainiron[KEY=VALUE ...] in the CSV")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if args.summary_only:
        print(summarise())
        return 0
    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; known: {sorted(METHODS)}")
    overrides = parse_overrides(args.set)
    label = "brainiron" + (f"[{' '.join(args.set)}]" if args.set else "")
    runs = args.runs or [3 if r >= 2 else 1 for r in args.res]
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    (RESULTS / "registration_machine.json").write_text(json.dumps(
        {**machine(), "settings": json.loads(json.dumps(
            __import__("brainiron.registration", fromlist=["x"]).settings_dict(
                registration_settings())))}, indent=1))
    for res, n in zip(args.res, runs, strict=True):
        for rep in range(args.start_rep, args.start_rep + n):
            for seed in args.phantom_seeds:
                root = ensure_phantom(args.workdir, res, seed)
                for method in methods:
                    spec = {"root": str(root), "sub": "01", "res": res, "rep": rep,
                            "method": method, "phantom_seed": seed}
                    if method == "brainiron" and overrides:
                        spec.update(overrides=overrides, label=label)
                    run_recorded_job(__file__, spec, flatten, RUNS_CSV, RUN_LINE)
    print(summarise())
    return 0


if __name__ == "__main__":
    sys.exit(main())
