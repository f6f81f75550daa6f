"""Snakemake script of rule ``validate``: brainiron.steps.validate."""

from brainiron.failures import run_step
from brainiron.steps import validate

run_step(snakemake, validate.main)  # noqa: F821 - injected by Snakemake
