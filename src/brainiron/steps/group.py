"""Rule ``group``: every subject's regional table in one long and one wide table; the
failures and ignored files; the derivatives' dataset_description.json."""

from __future__ import annotations

from ..io import write_json, write_tsv
from ..settings import Settings
from ..tables import (
    column_descriptions,
    dataset_description,
    failed_table,
    group_table,
    ignored_table,
    wide_descriptions,
    wide_table,
)


def main(smk) -> None:
    out = smk.output
    config = dict(smk.params.config)
    long = group_table(list(smk.input.stats), smk.params.participants,
                       Settings.from_config(config))
    write_tsv(long, out.regions)
    write_json(column_descriptions(), out.regions_json)
    wide = wide_table(long)
    write_tsv(wide, out.wide)
    write_json(wide_descriptions(wide), out.wide_json)
    write_tsv(failed_table(smk.params.failed), out.failed)
    write_tsv(ignored_table(smk.params.ignored), out.ignored)
    write_json(dataset_description(config), out.description)
