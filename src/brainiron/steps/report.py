"""Rule ``report``: the group HTML report (tables, group figures, methods) linking to each
subject's page (the pieces of rule ``report_subject``; this rule draws no overlay).

Of a subject the group page reads only its registration QC (``input.qc``) and its piece's
record (``input.pieces``), both in ``params.subjects`` order; ``params.subjects`` gives each
subject's key with the names and source kinds of its maps (the methods count fitted and
reconstructed maps from the kinds). The label images, registration images and maps are the
pieces' inputs, not this rule's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..report import SubjectInputs, build_report


def files_of(value) -> list[str]:
    """A named input as a list (Snakemake gives one file as a plain string)."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


def subject_inputs(subjects: Sequence, qc: Sequence[str]) -> list[SubjectInputs]:
    """Pair each subject of ``params.subjects`` (``[key, [[map, kind], ...]]``) with its
    registration QC; its maps are known by kind only (no image: the group page draws none)."""
    if len(qc) != len(subjects):
        raise ValueError(f"report inputs out of step: {len(subjects)} subjects, {len(qc)} QC "
                         f"files")
    return [SubjectInputs(key=key, qc=q, labels=None,
                          maps={name: (None, kind) for name, kind in kinds})
            for (key, kinds), q in zip(subjects, qc, strict=True)]


def main(smk) -> None:
    i = smk.input
    subjects = subject_inputs(smk.params.subjects, files_of(i.qc))
    pieces = [Path(p).parent for p in files_of(i.pieces)]
    build_report(smk.output.report, subjects, regions=i.regions, comparison=i.comparison,
                 failed=i.failed, ignored=i.ignored, description=i.description,
                 phantom_truth=files_of(i.truth), figures_dir=smk.output.figures,
                 pieces=pieces)
