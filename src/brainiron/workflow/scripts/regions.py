"""Snakemake script of rule ``regions``: brainiron.steps.regions."""

from brainiron.failures import run_step
from brainiron.steps import regions

run_step(snakemake, regions.main, subject_done=True)  # noqa: F821 - injected by Snakemake
