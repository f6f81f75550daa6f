"""Rule ``report``: the self-contained HTML report (tables, figures, overlays, methods)."""

from __future__ import annotations

from pathlib import Path

from ..report import build_report


def main(smk) -> None:
    build_report(str(Path(smk.input.description).parent), smk.output[0],
                 phantom_truth=smk.params.phantom_truth or None, bids_dir=smk.params.bids_dir)
