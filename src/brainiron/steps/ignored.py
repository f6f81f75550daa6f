"""Rule ``ignored``: ``group/ignored.tsv``, the dataset's files brainiron does not use, and
why."""

from __future__ import annotations

from ..io import write_json, write_tsv
from ..tables import IGNORED_COLUMNS, ignored_table, table_descriptions


def main(smk) -> None:
    write_tsv(ignored_table(smk.params.ignored), smk.output.tsv)
    write_json(table_descriptions("ignored", IGNORED_COLUMNS), smk.output.json)
