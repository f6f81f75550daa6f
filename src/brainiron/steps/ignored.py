"""Rule ``ignored``: ``group/ignored.tsv``, the dataset's files brainiron does not use, and
why."""

from __future__ import annotations

from ..io import write_tsv
from ..tables import ignored_table


def main(smk) -> None:
    write_tsv(ignored_table(smk.params.ignored), smk.output[0])
