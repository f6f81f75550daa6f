"""Snakemake script of rule ``compare``: brainiron.steps.compare."""

from brainiron.failures import run_step
from brainiron.steps import compare

run_step(snakemake, compare.main)  # noqa: F821 - injected by Snakemake
