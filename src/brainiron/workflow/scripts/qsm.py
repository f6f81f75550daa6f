"""Snakemake script of rule ``qsm``: brainiron.steps.qsm."""

from brainiron.failures import run_step
from brainiron.steps import qsm

run_step(snakemake, qsm.main)  # noqa: F821 - injected by Snakemake
