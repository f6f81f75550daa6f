"""Snakemake script of rule ``group``: brainiron.steps.group."""

from brainiron.failures import run_step
from brainiron.steps import group

run_step(snakemake, group.main)  # noqa: F821 - injected by Snakemake
