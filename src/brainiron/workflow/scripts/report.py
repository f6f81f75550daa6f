"""Snakemake script of rule ``report``: brainiron.steps.report."""

from brainiron.failures import run_step
from brainiron.steps import report

run_step(snakemake, report.main)  # noqa: F821 - injected by Snakemake
