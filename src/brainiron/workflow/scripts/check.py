"""Snakemake script of rule ``check``: brainiron.steps.check."""

from brainiron.failures import run_step
from brainiron.steps import check

run_step(snakemake, check.main)  # noqa: F821 - injected by Snakemake
