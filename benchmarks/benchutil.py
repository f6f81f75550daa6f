"""Small helpers shared by the benchmark scripts (same folder: on sys.path when they run)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" when absent)."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_recorded_job(script: str, spec: dict, flatten, runs_csv: str | Path, describe: str,
                     threads: int = 2) -> dict | None:
    """Run one job as ``python script --worker <spec as JSON>`` in its own process; record it.

    Parameters
    ----------
    script : str
        The benchmark script (its ``--worker`` mode prints the result as JSON on its last
        line of standard output).
    spec : dict
        The job (JSON-serialisable).
    flatten : callable
        ``flatten(spec, result, wall_s, load_before, load_after) -> dict``: the CSV row
        (wall time of the process in seconds, :func:`loadavg` before and after it).
    runs_csv : path
        The CSV file the row is appended to (:func:`append_csv_row`).
    describe : str
        The line printed for the run: a :meth:`str.format` template of ``spec`` and ``row``
        (e.g. ``"{spec[sub]} {row[seconds]:.1f} s"``).
    threads : int
        ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` of the worker.

    Returns
    -------
    dict or None
        The row; None when the worker failed (its exit code and the end of its standard
        error are printed, nothing is recorded).
    """
    before = loadavg()
    t = time.perf_counter()
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = loadavg()
    if proc.returncode != 0:
        print(f"[fail] {spec} exit {proc.returncode}\n{proc.stderr[-3000:]}", flush=True)
        return None
    row = flatten(spec, json.loads(proc.stdout.strip().splitlines()[-1]), wall, before, after)
    append_csv_row(runs_csv, row)
    print(describe.format(spec=spec, row=row), flush=True)
    return row


def append_csv_row(path: str | Path, row: dict) -> None:
    """Append ``row`` to the CSV file ``path`` (its folder and header made when it is new)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
