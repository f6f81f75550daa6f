"""Rule ``validate``: read the subject's voxels, check values and units, record the facts."""

from __future__ import annotations

from ..bids import Subject, subject_field_strength, validate_subject
from ..io import write_json


def main(smk) -> None:
    subj = Subject.from_dict(smk.params.subject)
    # The configured B0 is used only when the sidecars do not state it; null = must be stated
    # where it matters (R2*), an error otherwise; a chi-only subject may leave it unstated.
    report = validate_subject(subj, field_strength=smk.params.field_strength)
    b0, source = subject_field_strength(subj, smk.params.field_strength)
    out = report.to_dict()
    out.update({"subject": subj.to_dict(with_ignored=False), "field_strength_T": b0,
                "field_strength_source": source})
    write_json(out, smk.output[0])
