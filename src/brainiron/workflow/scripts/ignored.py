"""Snakemake script of rule ``ignored``: brainiron.steps.ignored."""

from brainiron.failures import run_step
from brainiron.steps import ignored

run_step(snakemake, ignored.main)  # noqa: F821 - injected by Snakemake
