"""Rule ``phantom``: generate the built-in phantom dataset (the default input)."""

from __future__ import annotations

from pathlib import Path

from ..phantom import generate_phantom
from ..settings import PhantomSettings


def main(smk) -> None:
    out_dir = Path(smk.output[0])
    settings = PhantomSettings.from_config(smk.params.settings)
    if out_dir.exists() and not any(out_dir.iterdir()):
        out_dir.rmdir()  # Snakemake creates the folder of a directory() output
    generate_phantom(out_dir, settings.phantom_config())
