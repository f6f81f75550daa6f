"""Rule ``description``: the derivatives' dataset-level files: ``dataset_description.json``
(with the run's configuration), ``README.md``, ``.bidsignore`` and the atlas description."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..io import write_json
from ..sidecars import atlas_description, bidsignore_text, derivative_readme
from ..tables import dataset_description


def main(smk) -> None:
    out = smk.output
    deriv = Path(out.description).parent
    description = dataset_description(dict(smk.params.configuration), deriv,
                                      smk.params.bids_dir)
    write_json(description, out.description)
    Path(out.readme).write_text(derivative_readme(description["Name"], __version__),
                                encoding="utf-8")
    Path(out.bidsignore).write_text(bidsignore_text(), encoding="utf-8")
    write_json(atlas_description(), out.atlas)
