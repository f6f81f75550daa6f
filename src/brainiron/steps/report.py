"""Rule ``report``: the group HTML report (tables, group figures, methods) linking to each
subject's page (the pieces of rule ``report_subject``; this rule draws no overlay).

The rule lists every subject's files in the same order (``input.qc``, ``input.labels``,
``input.labels_tsv``, ``input.registration``, ``input.pieces``: the pieces' records), the
quantified maps subject after subject (``input.maps``), and in ``params.subjects`` each
subject's key with the names and source kinds of its maps, which say how ``input.maps``
splits (the methods count fitted and reconstructed maps from the kinds).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..report import SubjectInputs, build_report


def files_of(value) -> list[str]:
    """A named input as a list (Snakemake gives one file as a plain string)."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


def subject_inputs(subjects: Sequence, qc: Sequence[str], labels: Sequence[str],
                   lookups: Sequence[str], registration: Sequence[str],
                   maps: Sequence[str]) -> list[SubjectInputs]:
    """Pair each subject of ``params.subjects`` (``[key, [[map, kind], ...]]``) with its
    files; ``maps`` holds every subject's maps, in that order."""
    if not len(qc) == len(labels) == len(lookups) == len(registration) == len(subjects):
        raise ValueError(f"report inputs out of step: {len(subjects)} subjects, {len(qc)} QC "
                         f"files, {len(labels)} label images, {len(lookups)} lookup tables, "
                         f"{len(registration)} registration images")
    if sum(len(m) for _, m in subjects) != len(maps):
        raise ValueError(f"report inputs out of step: {len(maps)} maps for "
                         f"{sum(len(m) for _, m in subjects)} in params.subjects")
    out, files = [], iter(maps)
    for (key, kinds), q, lab, lut, reg in zip(subjects, qc, labels, lookups, registration,
                                              strict=True):
        out.append(SubjectInputs(key=key, qc=q, labels=lab, lookup=lut, registration_image=reg,
                                 maps={name: (next(files), kind) for name, kind in kinds}))
    return out


def main(smk) -> None:
    i = smk.input
    subjects = subject_inputs(smk.params.subjects, files_of(i.qc), files_of(i.labels),
                              files_of(i.labels_tsv), files_of(i.registration), files_of(i.maps))
    pieces = [Path(p).parent for p in files_of(i.pieces)]
    build_report(smk.output.report, subjects, regions=i.regions, comparison=i.comparison,
                 failed=i.failed, ignored=i.ignored, description=i.description,
                 phantom_truth=files_of(i.truth), figures_dir=smk.output.figures,
                 pieces=pieces)
