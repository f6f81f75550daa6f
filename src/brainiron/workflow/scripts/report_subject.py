"""Snakemake script of rule ``report_subject``: brainiron.steps.report_subject."""

from brainiron.failures import run_step
from brainiron.steps import report_subject

run_step(snakemake, report_subject.main)  # noqa: F821 - injected by Snakemake
