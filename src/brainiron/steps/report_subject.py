"""Rule ``report_subject``: one subject's report piece (overlays, thumbnail, page, record).

Runs per subject (× session), in parallel, and again only when that subject's inputs
change; the group report (rule ``report``) reads the pieces' records
(:mod:`brainiron.report.subject`).
"""

from __future__ import annotations

from pathlib import Path

from ..report import SubjectInputs, build_subject_report
from .report import files_of


def subject_piece_inputs(key: str, qc: str, labels: str, lookup: str, registration: str,
                         maps, kinds) -> SubjectInputs:
    """A subject's files as the report draws them; ``kinds`` (``[[map, kind], ...]``, the
    rule's ``params.maps``) names and types ``maps`` in order."""
    maps = files_of(maps)
    if len(maps) != len(kinds):
        raise ValueError(f"report_subject inputs out of step for {key}: {len(maps)} maps "
                         f"for {len(kinds)} in params.maps")
    return SubjectInputs(key=key, qc=qc, labels=labels, lookup=lookup,
                         registration_image=registration,
                         maps={name: (path, kind) for (name, kind), path in
                               zip(kinds, maps, strict=True)})


def main(smk) -> None:
    i = smk.input
    record = Path(smk.output.record)
    subject = subject_piece_inputs(smk.wildcards.key, i.qc, i.labels, i.labels_tsv,
                                   i.registration, i.maps, smk.params.maps)
    made = build_subject_report(subject, record.parent, index=smk.params.index)
    if made != record:  # the rule and the layout name the record alike
        raise ValueError(f"report piece written as {made}, the rule expects {record}")
