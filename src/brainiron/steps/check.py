"""Rule ``check``: fail (exit 1) when any subject could not be processed; else a summary."""

from __future__ import annotations

from ..io import read_tsv, write_json
from ..tables import check_summary


def main(smk) -> None:
    failed = read_tsv(smk.input.failed, dtype=str)
    write_json(check_summary(failed, smk.input.failed), smk.output[0])
