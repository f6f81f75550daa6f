"""Snakemake script of rule ``phantom``: brainiron.steps.phantom."""

from brainiron.failures import run_step
from brainiron.steps import phantom

run_step(snakemake, phantom.main)  # noqa: F821 - injected by Snakemake
