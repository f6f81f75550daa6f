"""Snakemake script of rule ``description``: brainiron.steps.description."""

from brainiron.failures import run_step
from brainiron.steps import description

run_step(snakemake, description.main)  # noqa: F821 - injected by Snakemake
