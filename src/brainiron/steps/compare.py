"""Rule ``compare``: the group comparison table (OLS with covariates, Benjamini-Hochberg)."""

from __future__ import annotations

from pathlib import Path

from ..io import read_tsv, write_json, write_tsv
from ..settings import ComparisonSettings
from ..sidecars import describe_columns
from ..tables import comparison_descriptions, comparison_table


def main(smk) -> None:
    regions = Path(smk.input.regions)
    # Every subject failed: the long table is empty, and so is the comparison.
    long = read_tsv(regions, dtype={"session_id": str}) if regions.read_text().strip() \
        else None
    table = comparison_table(long, ComparisonSettings.from_config(smk.params.settings))
    write_tsv(table, smk.output.tsv)
    write_json(describe_columns(list(table.columns), comparison_descriptions()),
               smk.output.json)
