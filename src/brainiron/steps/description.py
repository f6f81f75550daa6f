"""Rule ``description``: the derivatives' dataset_description.json (with the run's
configuration)."""

from __future__ import annotations

from ..io import write_json
from ..tables import dataset_description


def main(smk) -> None:
    write_json(dataset_description(dict(smk.params.configuration)), smk.output[0])
