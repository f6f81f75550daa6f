"""Small helpers shared by the benchmark scripts (same folder: on sys.path when they run)."""

from __future__ import annotations


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" when absent)."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"
