"""Snakemake script of rule ``register``: brainiron.steps.register."""

from brainiron.failures import run_step
from brainiron.steps import register

run_step(snakemake, register.main)  # noqa: F821 - injected by Snakemake
