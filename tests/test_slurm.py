"""The workflow on SLURM: the phantom through workflow/profiles/slurm on a one-node cluster.

A real cluster is started on this machine (``slurm_cluster.SlurmCluster``: munged, MariaDB,
slurmdbd, slurmctld, slurmd; Debian packages ``slurm-wlm munge slurmdbd mariadb-server``), the
2-subject phantom at 4 mm is run once through ``--profile workflow/profiles/slurm`` (each
subject's chain one sbatch job, the profile's ``subject`` group; every group-level rule its
own job) and once locally with ``--cores 2``, and the group tables must agree. The test
skips, saying why, when the executor plugin (``pip install -e '.[slurm]'``) or the cluster's
programs are missing or the process is not root; it never installs anything.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import brainiron
from brainiron.workflow import DEFAULT_CONFIG, PROFILES
from slurm_cluster import ClusterUnavailable, SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PROFILE = PROFILES / "slurm"
PHANTOM = {"subjects": 2, "seed": 1, "voxel_size": 4.0}
# The plugin waits 40 s before its first status query (sane on a shared cluster); a test on an
# idle one-node cluster asks after 2 s so that the run measures the work, not the waiting.
TEST_ONLY_ARGS = ["--slurm-init-seconds-before-status-checks", "2"]
# What a lab adds for its site (docs/cluster.md): account and partition of the test cluster.
SITE_ARGS = ["--default-resources", "slurm_account=root", "slurm_partition=debug"]
REL_TOL = 1e-9


@pytest.fixture(scope="module")
def cluster():
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed "
                    "(pip install -e '.[slurm]')")
    slurm = SlurmCluster()
    try:
        slurm.start()
    except ClusterUnavailable as exc:
        pytest.skip(f"SLURM cluster not available: {exc}")
    try:
        yield slurm
    finally:
        slurm.stop()


def _timed_run(out: Path, extra_args: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    status = brainiron.run(None, out, cores=2, config={"phantom": PHANTOM},
                           extra_args=extra_args)
    return status, time.perf_counter() - start


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Both runs: {"slurm": (out, status, seconds), "local": (...)}, the SLURM one first."""
    out = tmp_path_factory.mktemp("slurm-vs-local")
    with pytest.MonkeyPatch.context() as mp:
        # brainiron.run starts Snakemake with this process's environment: point the SLURM
        # client commands (sbatch, sacct, ...) at the test cluster.
        for key, value in cluster.env.items():
            if key == "SLURM_CONF" or key == "PATH":
                mp.setenv(key, value)
        for key in list(os.environ):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_")) and key != "SLURM_CONF":
                mp.delenv(key)
        status, seconds = _timed_run(out / "slurm",
                                     ["--profile", str(PROFILE), *SITE_ARGS, *TEST_ONLY_ARGS])
    if status != 0:
        logs = sorted((out / "slurm" / ".snakemake").glob("**/slurm_logs/**/*.log"))
        tail = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs[-3:])
        pytest.fail(f"SLURM run failed (status {status}):\n{tail}\n{cluster.logs()}")
    local_status, local_seconds = _timed_run(out / "local", [])
    return {"slurm": (out / "slurm", status, seconds),
            "local": (out / "local", local_status, local_seconds)}


def _jobs(cluster) -> pd.DataFrame:
    """Every job the cluster ran, from the accounting database (sacct)."""
    fields = ("JobIDRaw,JobName%60,Comment%120,Account,Partition,State,ReqCPUS,ReqMem,"
              "Timelimit,ElapsedRaw,Start,End")
    text = cluster.run("sacct", "-X", "-a", "--parsable2", "--noheader",
                       f"--format={fields}").stdout
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=fields.replace("%60", "").replace("%120", "")
                        .split(","))


def _rule_seconds(out: Path) -> float:
    """Seconds the rules themselves took (Snakemake's benchmark files, column s)."""
    files = [*(out / "benchmarks").rglob("*.tsv"),
             *(out / "brainiron" / "benchmarks").rglob("*.tsv")]
    return sum(float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files)


def test_wall_times(runs, cluster, capsys):
    (_, slurm_status, slurm_s), (_, local_status, local_s) = runs["slurm"], runs["local"]
    jobs = _jobs(cluster)
    in_jobs = jobs["ElapsedRaw"].astype(int).sum()
    start = pd.to_datetime(jobs["Start"]).min()
    end = pd.to_datetime(jobs["End"]).max()
    work = {name: _rule_seconds(runs[name][0]) for name in ("slurm", "local")}
    with capsys.disabled():
        print(f"\nbrainiron phantom ({PHANTOM['subjects']} subjects, "
              f"{PHANTOM['voxel_size']} mm): SLURM executor {slurm_s:.1f} s wall "
              f"({len(jobs)} jobs, {in_jobs} s inside jobs, first start to last end "
              f"{(end - start).total_seconds():.0f} s, rules' own work {work['slurm']:.0f} s); "
              f"local --cores 2 {local_s:.1f} s wall (rules' own work {work['local']:.0f} s); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    assert slurm_status == 0
    assert local_status == 0


def _subject_rules(out: Path, key: str) -> set[str]:
    """The rules that ran for one subject: its benchmark files (rule-<name>.tsv)."""
    files = (out / "brainiron" / "benchmarks").rglob(f"{key}_rule-*.tsv")
    return {f.name.removesuffix(".tsv").split("_rule-", 1)[1] for f in files}


def test_each_subject_ran_as_one_slurm_job(runs, cluster):
    out = runs["slurm"][0]
    jobs = _jobs(cluster)
    # A group job's comment is rule_<group>_<its rules, sorted, joined by _>.
    grouped = jobs[jobs["Comment"].str.startswith("rule_subject_")]
    rules = jobs.loc[~jobs.index.isin(grouped.index), "Comment"].str.extract(
        r"^rule_([a-z_]+?)(?:_wildcards_.*)?$")[0]
    # 2 subjects: phantom, 2 x subject (validate -> register -> regions [-> report_subject]),
    # then group, compare, report, check.
    assert len(grouped) == 2, jobs
    assert rules.value_counts().to_dict() == {"phantom": 1, "group": 1, "compare": 1,
                                              "report": 1, "check": 1}, jobs
    for key in ("sub-01", "sub-02"):
        ran = _subject_rules(out, key)
        assert {"validate", "register", "regions"} <= ran, (key, ran)
    for comment in grouped["Comment"]:
        assert all(f"_{rule}" in comment for rule in _subject_rules(out, "sub-01")), comment
    assert (jobs["State"] == "COMPLETED").all(), jobs
    assert jobs["JobName"].nunique() == 1  # one Snakemake run (its run id names the jobs)
    # The outputs are the SLURM run's own (not copied or made locally).
    assert (out / "brainiron" / "group" / "regions.tsv").is_file()


def test_profile_resources_reach_sbatch(runs, cluster):
    out = runs["slurm"][0]
    jobs = _jobs(cluster)
    grouped = jobs[jobs["Comment"].str.startswith("rule_subject_")]
    jobs = jobs.assign(rule=jobs["Comment"].str.extract(r"^rule_([a-z]+)")[0])
    by_rule = jobs.drop_duplicates("rule").set_index("rule")
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    # A subject's job runs its rules one after another: CPUs and memory of the largest
    # (register: `threads` -> --cpus-per-task, registration.mem_mb -> --mem), time limit the
    # sum of the profile's runtimes of the rules it ran (-t).
    ran = _subject_rules(out, "sub-01")
    runtime = {rule: profile["set-resources"][rule]["runtime"] for rule in ran}
    # Snakemake adds the runtimes along the chain and takes the larger of the rules of one
    # layer: regions and report_subject both follow register (55 min measured, not 65).
    side_by_side = {"regions", "report_subject"} & ran
    minutes = sum(runtime[r] for r in ran - side_by_side) \
        + max((runtime[r] for r in side_by_side), default=0)
    assert minutes >= 55  # validate 10 + register 30 + regions 15 at least
    for _, job in grouped.iterrows():
        assert job["ReqCPUS"] == str(config["threads"]) == "2", job
        assert job["ReqMem"] == f"{config['registration']['mem_mb']}M", job
        assert job["Timelimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", job
    # Group-level jobs: their own rule's resources.
    assert by_rule.loc["group", "ReqCPUS"] == "1"
    assert by_rule.loc["group", "ReqMem"] == "2000M"
    assert by_rule.loc["group", "Timelimit"] == "00:15:00"
    assert by_rule.loc["check", "ReqMem"] == "500M"
    # The site's account and partition (--default-resources) reached every job.
    assert (jobs["Account"] == "root").all() and (jobs["Partition"] == "debug").all(), jobs


def test_slurm_and_local_give_the_same_tables(runs):
    slurm_dir, local_dir = runs["slurm"][0], runs["local"][0]
    for name in ("regions.tsv", "desc-wide_regions.tsv"):
        a = slurm_dir / "brainiron" / "group" / name
        b = local_dir / "brainiron" / "group" / name
        if a.read_bytes() == b.read_bytes():
            continue
        left = pd.read_csv(a, sep="\t", dtype={"session_id": str})
        right = pd.read_csv(b, sep="\t", dtype={"session_id": str})
        assert list(left.columns) == list(right.columns), name
        assert left.shape == right.shape, name
        numeric = left.select_dtypes("number").columns
        np.testing.assert_allclose(left[numeric].to_numpy(float),
                                   right[numeric].to_numpy(float), rtol=REL_TOL, atol=0,
                                   equal_nan=True, err_msg=name)
        others = [c for c in left.columns if c not in numeric]
        pd.testing.assert_frame_equal(left[others], right[others], obj=name)
