"""Snakemake script of rule ``coregister``: brainiron.steps.coregister."""

from brainiron.failures import run_step
from brainiron.steps import coregister

run_step(snakemake, coregister.main)  # noqa: F821 - injected by Snakemake
