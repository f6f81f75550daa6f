#!/usr/bin/env python
"""SLURM: grouped (one job per subject) vs ungrouped (one job per rule) vs local ``--cores 2``.

Usage (root; Debian packages ``slurm-wlm munge slurmdbd mariadb-server`` and the ``slurm``
extra, as for ``tests/test_slurm.py``)::

    nice -n 10 python benchmarks/bench_cluster.py                    # 8 subjects, 4 mm
    nice -n 10 python benchmarks/bench_cluster.py --subjects 2 --modes grouped local

A one-node SLURM cluster with accounting is started on this machine
(``tests/slurm_cluster.py``, the integration test's), and one phantom of N subjects at 4 mm
(seed 1, the test's settings) is generated once, before the timed runs. Each run processes it
into a fresh output folder with ``brainiron.run(phantom, out, cores=2, extra_args=...)``:

* ``grouped``: ``--profile workflow/profiles/slurm`` (the shipped profile: the ``subject``
  group, one SLURM job per subject's chain);
* ``ungrouped``: a copy of that profile without its ``groups`` and ``group-components``
  entries (one SLURM job per rule and subject, as before);
* ``grouped2``: the shipped profile with ``--group-components subject=2`` (two subjects'
  chains per SLURM job);
* ``local``: no profile, ``--cores 2``.

Both SLURM runs add the site's ``--default-resources slurm_account=root slurm_partition=debug``
and ``--slurm-init-seconds-before-status-checks <s>`` (default 2, the test's; the plugin's own
default is 40). Recorded per run: wall time, SLURM jobs (from ``sacct``: this run's jobs,
their summed elapsed time, first start to last end), the rules' own work (Snakemake's
benchmark files), load averages. Raw results: ``benchmarks/results/cluster.csv`` (appended).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from benchutil import loadavg

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests"))

from slurm_cluster import SlurmCluster  # noqa: E402

SITE_ARGS = ["--default-resources", "slurm_account=root", "slurm_partition=debug"]
FIELDS = ("JobIDRaw,JobName%60,Comment%120,State,ReqCPUS,ReqMem,Timelimit,ElapsedRaw,"
          "Start,End")


def sacct(cluster) -> pd.DataFrame:
    text = cluster.run("sacct", "-X", "-a", "--parsable2", "--noheader",
                       f"--format={FIELDS}").stdout
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=FIELDS.replace("%60", "").replace("%120", "").split(","))


def ungrouped_profile(folder: Path) -> Path:
    """The shipped SLURM profile without its job groups (one job per rule)."""
    from brainiron.workflow import PROFILES

    config = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    config.pop("groups", None)
    config.pop("group-components", None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def rule_seconds(out: Path) -> float:
    files = list((out / "brainiron" / "benchmarks").rglob("*.tsv"))
    return sum(float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files)


def run_one(mode: str, phantom: Path, out: Path, cluster, init_seconds: int,
            profiles: Path) -> dict:
    import brainiron
    from brainiron.workflow import PROFILES

    shutil.rmtree(out, ignore_errors=True)
    extra: list[str] = []
    if mode != "local":
        profile = PROFILES / "slurm" if mode != "ungrouped" else ungrouped_profile(
            profiles / "ungrouped")
        extra = ["--profile", str(profile), *SITE_ARGS,
                 "--slurm-init-seconds-before-status-checks", str(init_seconds)]
        if mode == "grouped2":
            extra += ["--group-components", "subject=2"]
    before_ids = set(sacct(cluster)["JobIDRaw"]) if cluster else set()
    load_before = loadavg()
    t0 = time.perf_counter()
    status = brainiron.run(phantom, out, cores=2, extra_args=extra)
    wall = time.perf_counter() - t0
    row = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "mode": mode,
           "subjects": len(list(phantom.glob("sub-*"))), "exit": status,
           "wall_s": round(wall, 1), "rules_work_s": round(rule_seconds(out), 1),
           "init_status_s": init_seconds if mode != "local" else "",
           "load_before": load_before, "load_after": loadavg()}
    if mode != "local":
        jobs = sacct(cluster)
        jobs = jobs[~jobs["JobIDRaw"].isin(before_ids)]
        kinds = jobs["Comment"].str.extract(r"^rule_([a-z]+)")[0].value_counts().to_dict()
        row.update({
            "sbatch_jobs": len(jobs), "job_kinds": " ".join(f"{k}:{v}" for k, v in
                                                            sorted(kinds.items())),
            "in_jobs_s": int(jobs["ElapsedRaw"].astype(int).sum()),
            "first_start_to_last_end_s": int((pd.to_datetime(jobs["End"]).max() - pd.to_datetime(
                jobs["Start"]).min()).total_seconds()),
            "states": " ".join(sorted(set(jobs["State"])))})
        group_jobs = jobs[jobs["Comment"].str.startswith("rule_subject_")]
        if len(group_jobs):
            first = group_jobs.iloc[0]
            row["group_job_request"] = (f"{first['ReqCPUS']} CPUs, {first['ReqMem']}, "
                                        f"{first['Timelimit']}")
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["grouped", "ungrouped", "local"])
    parser.add_argument("--init-seconds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench/cluster"))
    args = parser.parse_args(argv)
    from brainiron.phantom import generate_phantom

    args.workdir.mkdir(parents=True, exist_ok=True)
    phantom = args.workdir / f"phantom-{args.subjects}"
    if not (phantom / "participants.tsv").exists():
        generate_phantom(phantom, n_subjects=args.subjects, seed=1, voxel_size=4.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "cluster.csv"
    fields = ["date_utc", "mode", "subjects", "exit", "wall_s", "rules_work_s", "sbatch_jobs",
              "job_kinds", "in_jobs_s", "first_start_to_last_end_s", "group_job_request",
              "states", "init_status_s", "load_before", "load_after"]
    cluster = None
    saved = dict(os.environ)
    try:
        if any(m != "local" for m in args.modes):
            cluster = SlurmCluster().start()
            # What tests/test_slurm.py does: the client commands find the test cluster.
            os.environ.update({k: v for k, v in cluster.env.items()
                               if k in ("SLURM_CONF", "PATH")})
            for key in list(os.environ):
                if key.startswith(("SLURM_", "SBATCH_", "SRUN_")) and key != "SLURM_CONF":
                    del os.environ[key]
        with tempfile.TemporaryDirectory() as profiles:
            for mode in args.modes:
                row = run_one(mode, phantom, args.workdir / f"out-{mode}-{args.subjects}",
                              cluster, args.init_seconds, Path(profiles))
                print(row, flush=True)
                new = not path.exists()
                with open(path, "a", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=fields)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
