"""Snakemake script of rule ``relaxometry``: brainiron.steps.relaxometry."""

from brainiron.failures import run_step
from brainiron.steps import relaxometry

run_step(snakemake, relaxometry.main)  # noqa: F821 - injected by Snakemake
