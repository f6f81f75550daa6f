#!/usr/bin/env python
"""Planning at scale: ``snakemake -n`` on 1,000- and 5,000-subject BIDS datasets.

Usage::

    nice -n 10 python benchmarks/bench_planning.py                 # 1,000 and 5,000 subjects
    nice -n 10 python benchmarks/bench_planning.py --subjects 100 1000

One phantom subject (``brainiron.phantom.generate_phantom``: 1 subject, 4 mm, seed 0: T1w, χ
map, R2* map, 8 MEGRE echoes) is generated once; each dataset of N subjects is made of hard
links to its files, renamed ``sub-00001`` ... (and a ``participants.tsv`` row each), so that
the trees cost no disk space and discovery reads N × 27 real files (headers and sidecars).

For each N, in a fresh output folder, the shipped Snakefile and configuration are planned with
``python -m snakemake --snakefile ... --directory <out> --configfile <out>/config.yaml
--cores 2 -n --quiet rules`` (what ``brainiron run --dry-run`` starts, without its own
dataset check), under ``/usr/bin/time`` (wall time, CPU time = user + system, which depends
less on what else the machine runs, maximum resident set size):

* **cold**: no discovery cache (``<out>/.brainiron/discovery.json``, brainiron.bids.cache);
* **warm**: the same command again (the cache written by the cold run is used);
* **job**: what one cluster job plans (``--target-jobs validate:... --mode remote -n``: a
  job's Snakemake, which uses the cache its controller wrote without listing the dataset),
  with the cache and, for comparison, without it (cache removed first).

Also recorded: the number of jobs planned (Snakemake's job stats), the cache's size, the
load averages before and after, and which code ran (commit and checkout: the script also
measures another checkout's code with ``PYTHONPATH=<checkout>/src``, e.g. the code before the
cache, which has no cache to use). Raw results: ``benchmarks/results/planning.csv`` (one row per
measurement, appended).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchutil import loadavg

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def phantom_subject(workdir: Path) -> Path:
    """One 4 mm phantom subject (generated once)."""
    from brainiron.phantom import generate_phantom

    root = workdir / "phantom-1"
    if not (root / "participants.tsv").exists():
        generate_phantom(root, n_subjects=1, voxel_size=4.0, seed=0)
    return root


def build_tree(source: Path, n: int, dest: Path) -> Path:
    """A BIDS dataset of ``n`` subjects, each hard links to ``source``'s only subject."""
    if (dest / "participants.tsv").exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("dataset_description.json", "README.md", "participants.json"):
        shutil.copy(source / name, tmp / name)
    header, row = (source / "participants.tsv").read_text().splitlines()[:2]
    subject = next(source.glob("sub-*"))
    files = sorted((subject / "anat").iterdir())
    rows = [header]
    for i in range(1, n + 1):
        label = f"sub-{i:05d}"
        anat = tmp / label / "anat"
        anat.mkdir(parents=True)
        for f in files:
            os.link(f, anat / f.name.replace(subject.name, label))
        rows.append(row.replace(subject.name, label, 1))
    (tmp / "participants.tsv").write_text("\n".join(rows) + "\n")
    tmp.rename(dest)
    return dest


def timed(cmd: list[str], log: Path) -> tuple[int, float, float, float, str]:
    """(exit status, wall s, CPU s (user + system), peak RSS MB, output) of ``cmd`` under
    /usr/bin/time."""
    fmt = "BENCH %e %U %S %M"
    with open(log, "w") as fh:
        status = subprocess.call(["/usr/bin/time", "-f", fmt, *cmd], stdout=fh,
                                 stderr=subprocess.STDOUT)
    text = log.read_text()
    match = re.findall(r"^BENCH ([\d.]+) ([\d.]+) ([\d.]+) (\d+)$", text, flags=re.M)[-1]
    return (status, float(match[0]), float(match[1]) + float(match[2]), int(match[3]) / 1024,
            text)


def code_version() -> str:
    """The commit of the brainiron code being measured (it may be another checkout's)."""
    import brainiron

    folder = Path(brainiron.__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "."],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(folder)
    return f"{rev}{'+' if dirty else ''} {folder.parents[1]}"


def planned_jobs(text: str) -> int | None:
    match = re.search(r"^total\s+(\d+)$", text, flags=re.M)
    return int(match.group(1)) if match else None


def measure(n: int, tree: Path, workdir: Path, writer) -> None:
    import yaml

    from brainiron.workflow import SNAKEFILE, merged_config

    out = workdir / f"out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    conf = out / "config.yaml"
    conf.write_text(yaml.safe_dump(merged_config({"bids_dir": str(tree),
                                                  "output_dir": str(out)}), sort_keys=False))
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
            str(out), "--configfile", str(conf)]
    plan = [*base, "--cores", "2", "-n", "--quiet", "rules"]
    job = [*base, "--cores", "1", "--target-jobs",
           "validate:folder=sub-00001,key=sub-00001", "--mode", "remote", "-n"]
    cache = out / ".brainiron" / "discovery.json"  # brainiron.bids.cache.CACHE_FILE
    for kind, cmd, drop_cache in (("cold", plan, True), ("warm", plan, False),
                                  ("job, cache", job, False), ("job, no cache", job, True)):
        if drop_cache:
            cache.unlink(missing_ok=True)
        before = loadavg()
        status, wall, cpu, rss, text = timed(cmd, out / f"bench-{kind.replace(', ', '-')}.log")
        row = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "subjects": n,
               "run": kind, "exit": status, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
               "peak_rss_mb": round(rss), "jobs_planned": planned_jobs(text),
               "cache_mb": round(cache.stat().st_size / 2**20, 1) if cache.exists() else 0,
               "load_before": before, "load_after": loadavg(), "code": code_version()}
        writer(row)
        print(row, flush=True)
        if status != 0:
            print(text[-3000:], file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench/planning"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    source = phantom_subject(args.workdir)
    path = RESULTS / "planning.csv"
    fields = ["date_utc", "subjects", "run", "exit", "wall_s", "cpu_s", "peak_rss_mb",
              "jobs_planned", "cache_mb", "load_before", "load_after", "code"]
    new = not path.exists()

    def write(row):
        nonlocal new
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            if new:
                w.writeheader()
                new = False
            w.writerow(row)

    for n in args.subjects:
        t0 = time.perf_counter()
        tree = build_tree(source, n, args.workdir / f"ds-{n}")
        print(f"[tree] {n} subjects in {time.perf_counter() - t0:.1f} s", flush=True)
        measure(n, tree, args.workdir, write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
