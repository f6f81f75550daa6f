"""Snakemake script of rule ``refine``: brainiron.steps.refine."""

from brainiron.failures import run_step
from brainiron.steps import refine

run_step(snakemake, refine.main)  # noqa: F821 - injected by Snakemake
