"""Entry point of every rule's script directive: run the rule's brainiron step."""

from brainiron.steps import run_rule

run_rule(snakemake)  # noqa: F821 - injected by Snakemake
