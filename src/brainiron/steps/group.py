"""Rule ``group``: every subject's regional table in one long and one wide table, with
their sidecars; the subjects that failed."""

from __future__ import annotations

from ..io import write_json, write_tsv
from ..settings import IronSettings, Settings
from ..tables import (
    FAILED_COLUMNS,
    column_descriptions,
    failed_table,
    group_table,
    participant_descriptions,
    table_descriptions,
    wide_descriptions,
    wide_table,
)


def main(smk) -> None:
    out = smk.output
    b0 = smk.params.field_strength  # None: only the sidecars state B0 (tesla)
    settings = Settings(iron=IronSettings.from_config(smk.params.iron),
                        field_strength=None if b0 is None else float(b0))
    participants = list(smk.input.participants)
    long = group_table(list(smk.input.stats), participants[0] if participants else None,
                       settings)
    write_tsv(long, out.regions)
    known = column_descriptions()
    merged = participant_descriptions(participants[0] if participants else None,
                                      [c for c in long.columns if c not in known])
    write_json(column_descriptions(list(long.columns), merged), out.regions_json)
    wide = wide_table(long)
    write_tsv(wide, out.wide)
    write_json(wide_descriptions(wide), out.wide_json)
    write_tsv(failed_table(smk.params.failed), out.failed)
    write_json(table_descriptions("failed", FAILED_COLUMNS), out.failed_json)
