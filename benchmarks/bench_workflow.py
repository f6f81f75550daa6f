#!/usr/bin/env python
"""End to end: the whole brainiron workflow on the 1 mm phantom for 1, 4 and 16 subjects.

Usage::

    python benchmarks/bench_workflow.py                       # 1, 4, then 16 subjects
    python benchmarks/bench_workflow.py --subjects 1 4        # a subset
    python benchmarks/bench_workflow.py --phantom-only        # just generate the phantom
    python benchmarks/bench_workflow.py --subjects 4 16 --voxel-size 4 --tag 4mm  # report

One phantom of ``max(--subjects)`` subjects is generated first (untimed for the workflow;
its own time is recorded in ``workflow_phantom.json``) with the settings the workflow's
``phantom`` rule uses (``phantom: {subjects: N, seed: 0, voxel_size: 1.0, r2starmap: true}``).
Each run then processes the first N of its subjects::

    brainiron run <phantom> <workdir>/run-N --cores 2 --participant-label 01 .. N

(``brainiron run`` = ``snakemake --cores 2 --keep-going`` on the shipped Snakefile and
config), in a fresh output folder, under ``/usr/bin/time -v``. Measured per run: wall time,
subjects/hour, peak RSS of the largest single process (``/usr/bin/time``'s maximum resident
set size, i.e. ``ru_maxrss`` of the children), the peak of the summed RSS of the whole process
tree (sampled every 0.5 s with psutil: concurrent jobs add up), load averages before/after,
and the per-rule breakdown from the ``benchmark:`` files Snakemake writes under
``<out>/brainiron/benchmarks/`` (sum and median of ``s`` and ``max_rss`` per rule).

Raw results (written after each run, so an interrupted session keeps what finished):
``benchmarks/results/workflow_runs.csv`` (one row per run),
``benchmarks/results/workflow_rules_N<N>.csv`` (one row per benchmark file),
``benchmarks/results/workflow_rules_summary.csv`` (per run × rule).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from benchutil import cpu_model, loadavg

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> dict:
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "mem_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                  / 2 ** 30, 1)}


def generate(root: Path, n: int, voxel: float) -> dict:
    from brainiron.phantom import PhantomConfig, generate_phantom

    # The 1 mm phantom's record keeps its name; other voxel sizes get their own.
    info_path = RESULTS / ("workflow_phantom.json" if voxel == 1.0 else
                           f"workflow_phantom_{voxel:g}mm.json")
    if (root / "participants.tsv").exists():
        print(f"[phantom] reusing {root}", flush=True)
        return json.loads(info_path.read_text()) if info_path.exists() else {}
    # Same settings as the workflow's phantom rule (brainiron.steps.phantom).
    cfg = PhantomConfig(n_subjects=n, seed=0, voxel_size=(voxel,) * 3, with_r2starmap=True)
    before = loadavg()
    t0 = time.perf_counter()
    generate_phantom(root, cfg)
    info = {"subjects": n, "voxel_size": voxel, "seed": 0, "seconds": round(
        time.perf_counter() - t0, 1), "load_before": before, "load_after": loadavg(),
        "root": str(root), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=1))
    print(f"[phantom] {n} subjects at {voxel} mm in {info['seconds']} s", flush=True)
    return info


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants (psutil, every 0.5 s)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        import psutil
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.stop.wait(0.5)


def rule_of(path: Path) -> str:
    """The rule of a benchmark file: ``<key>_rule-<rule>.tsv`` or ``rule-<rule>.tsv``
    (io_spec.json's logs section; older runs: ``<key>_<rule>.tsv``, ``<rule>.tsv``)."""
    name = path.stem
    m = re.search(r"(?:^|_)rule-(\w+)$", name) or \
        re.match(r".*_(validate|relaxometry|register|regions)$", name)
    return m.group(1) if m else name


def read_benchmarks(deriv: Path) -> list[dict]:
    rows = []
    for f in sorted((deriv / "benchmarks").rglob("*.tsv")):
        with open(f) as fh:
            for rec in csv.DictReader(fh, delimiter="\t"):
                rows.append({"rule": rule_of(f), "file": str(f.relative_to(deriv)),
                             "s": float(rec["s"]),
                             "max_rss_mb": float(rec["max_rss"]) if rec.get("max_rss") not in
                             (None, "", "NA", "-") else float("nan"),
                             "cpu_time_s": float(rec["cpu_time"]) if rec.get("cpu_time") not in
                             (None, "", "NA", "-") else float("nan")})
    return rows


def append_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


def run_one(phantom: Path, workdir: Path, n: int, cores: int,
            deadline: float | None = None, config: list[str] | None = None,
            label: str = "") -> dict:
    tag = "".join(f"_{c.replace('=', '-')}" for c in config or []) + (f"_{label}" if label
                                                                      else "")
    out = workdir / f"run-{n}{tag}"
    if out.exists():
        shutil.rmtree(out)
    labels = [f"{i + 1:02d}" for i in range(n)]
    cmd = ["/usr/bin/time", "-v", "-o", str(workdir / f"time-{n}{tag}.txt"), "brainiron",
           "run", str(phantom), str(out), "--cores", str(cores), "--participant-label", *labels]
    if config:
        cmd += ["--config", *config]
    print(f"[run] N={n}: {' '.join(cmd)}", flush=True)
    before = loadavg()
    t0 = time.perf_counter()
    with open(workdir / f"log-{n}{tag}.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        timed_out = False
        while True:
            try:
                status = proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.time() > deadline:
                    # Stop this run (its own process group, started above) and keep what
                    # finished: the benchmark files of completed jobs.
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        status = proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        status = proc.wait()
                    break
        sampler.stop.set()
    wall = time.perf_counter() - t0
    after = loadavg()
    time_file = workdir / f"time-{n}{tag}.txt"
    tv = time_file.read_text() if time_file.exists() else ""

    def grab(pattern):
        m = re.search(pattern, tv)
        return float(m.group(1)) if m else float("nan")
    maxrss_kb = grab(r"Maximum resident set size \(kbytes\): (\d+)")
    user = grab(r"User time \(seconds\): ([\d.]+)")
    system = grab(r"System time \(seconds\): ([\d.]+)")
    bench = read_benchmarks(out / "brainiron")
    for r in bench:
        r["subjects"] = n
        r["config"] = " ".join(config or [])
    RESULTS.mkdir(parents=True, exist_ok=True)
    rules_path = RESULTS / f"workflow_rules_N{n}{tag}.csv"
    if rules_path.exists():
        rules_path.unlink()
    append_csv(rules_path, bench)
    summary = []
    by_rule: dict[str, list[dict]] = {}
    for r in bench:
        by_rule.setdefault(r["rule"], []).append(r)
    for rule, rs in by_rule.items():
        s = np.array([r["s"] for r in rs])
        m = np.array([r["max_rss_mb"] for r in rs])
        summary.append({"subjects": n, "config": " ".join(config or []), "rule": rule,
                        "jobs": len(rs),
                        "s_sum": round(float(s.sum()), 2),
                        "s_median": round(float(np.median(s)), 2),
                        "max_rss_mb_median": round(float(np.nanmedian(m)), 1),
                        "max_rss_mb_max": round(float(np.nanmax(m)), 1),
                        "share_of_wall": round(float(s.sum()) / wall, 3)})
    append_csv(RESULTS / "workflow_rules_summary.csv", summary)
    regions = out / "brainiron" / "group" / "regions.tsv"
    failed = out / "brainiron" / "group" / "failed.tsv"
    n_failed = max(sum(1 for _ in open(failed)) - 1, 0) if failed.exists() else -1
    completed = sum(1 for r in bench if r["rule"] == "regions") // 1
    row = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "subjects": n,
           "cores": cores, "config": " ".join(config or []),
           "exit_status": "timeout" if timed_out else status,
           "subjects_with_regions_done": completed, "wall_s": round(wall, 1),
           "s_per_subject": round(wall / n, 1),
           "subjects_per_hour": round(3600.0 * n / wall, 2),
           "peak_rss_single_process_mb": round(maxrss_kb / 1024.0, 1),
           "peak_rss_tree_sum_mb": round(sampler.peak / 2 ** 20, 1),
           "cpu_user_s": user, "cpu_sys_s": system,
           "cpu_per_wall": round((user + system) / wall, 2),
           "regions_tsv": regions.exists(), "failed_subjects": n_failed,
           "load_before": before, "load_after": after,
           "command": " ".join(cmd[4:])}
    append_csv(RESULTS / "workflow_runs.csv", [row])
    print(f"[done] N={n}: {wall:.0f} s ({wall / n:.0f} s/subject, "
          f"{row['subjects_per_hour']} subjects/h), peak single {row['peak_rss_single_process_mb']}"
          f" MB, tree {row['peak_rss_tree_sum_mb']} MB, exit {status}, load {before} -> {after}",
          flush=True)
    for s in sorted(summary, key=lambda x: -x["s_sum"]):
        print(f"    {s['rule']:<12} jobs {s['jobs']:>3}  sum {s['s_sum']:8.1f} s  median "
              f"{s['s_median']:7.1f} s  max_rss median {s['max_rss_mb_median']:7.1f} MB",
              flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--voxel-size", type=float, default=1.0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", nargs="+", default=None, metavar="KEY=VALUE",
                    help="passed to brainiron run --config (e.g. threads=1); names the run "
                         "folder and fills the config column")
    ap.add_argument("--workdir", type=Path,
                    default=Path(os.environ.get("TMPDIR", "/tmp")) / "brainiron-bench-workflow")
    ap.add_argument("--phantom-subjects", type=int, default=None,
                    help="subjects in the phantom (default: max of --subjects)")
    ap.add_argument("--phantom-only", action="store_true")
    ap.add_argument("--tag", default="", help="appended to the run folder and the "
                    "workflow_rules_N<N>_<tag>.csv name (e.g. 4mm-before): keeps runs apart")
    ap.add_argument("--deadline-utc", help="HH:MM (today, UTC): stop a run still going then "
                    "and record what finished")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    n_ph = args.phantom_subjects or max(args.subjects)
    phantom = args.workdir / f"phantom-{n_ph}sub-{args.voxel_size:g}mm"
    (RESULTS / "workflow_machine.json").write_text(json.dumps(machine(), indent=1))
    generate(phantom, n_ph, args.voxel_size)
    if args.phantom_only:
        return 0
    deadline = None
    if args.deadline_utc:
        import calendar
        hh, mm = map(int, args.deadline_utc.split(":"))
        today = time.gmtime()
        deadline = calendar.timegm((today.tm_year, today.tm_mon, today.tm_mday, hh, mm, 0))
    for n in args.subjects:
        run_one(phantom, args.workdir, n, args.cores, deadline, args.config, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
