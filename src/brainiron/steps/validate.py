"""Rule ``validate``: read the subject's voxels, check values and units, record the facts."""

from __future__ import annotations

from ..bids import Subject, validate_subject
from ..io import write_json


def main(smk) -> None:
    subj = Subject.from_dict(smk.params.subject)
    field_strength = float(smk.params.field_strength)
    report = validate_subject(subj, field_strength=field_strength)
    out = report.to_dict()
    out.update({"subject": subj.to_dict(with_ignored=False),
                "field_strength_T": subj.field_strength or field_strength,
                "field_strength_source": "sidecar" if subj.field_strength else "config"})
    write_json(out, smk.output[0])
