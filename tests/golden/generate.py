"""Golden outputs of the workflow on three small phantoms (a regression fixture).

The architecture refactor (issue 13) must not change a single number: this script runs the
workflow on three small phantoms that between them take every code path (T1w, magnitude and
χ-only registration; fitted R2*; contrast refinement; whole-brain χ reference) and stores
the group tables and every label image under ``tests/golden/data/<variant>/``.
``tests/test_golden.py`` runs the current code on the same phantoms and compares.

This is a regression fixture, not ground truth: accuracy against the phantom's truth is
tested elsewhere. Regenerate it (``python tests/golden/generate.py``) only in a commit that
changes results on purpose, and say so in that commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

#: variant → (phantom overrides, workflow configuration overrides)
VARIANTS: dict[str, tuple[dict, dict]] = {
    "t1w": ({"n_subjects": 3, "seed": 21, "voxel_size": (4.0, 4.0, 4.0)},
            {"refinement.enabled": "true"}),
    "megre": ({"n_subjects": 2, "seed": 22, "voxel_size": (4.0, 4.0, 4.0),
               "with_t1w": False, "with_r2starmap": False},
              {"chi_reference": "wholebrain"}),
    "chi": ({"n_subjects": 2, "seed": 23, "voxel_size": (4.0, 4.0, 4.0), "with_t1w": False,
             "with_megre": False, "with_r2starmap": False},
            {"refinement.enabled": "true"}),
}
#: The group tables compared, by the fixture's file name → their brainiron.layout name (the
#: wide table is group/desc-wide_regions.tsv since issue 16; the fixture keeps its old name).
TABLES = {"regions.tsv": "regions", "regions_wide.tsv": "regions_wide",
          "group_comparison.tsv": "group_comparison"}
#: Label and mask images compared voxel for voxel (relative to a subject's anat folder).
IMAGES = ("space-individual_atlas-CIT168_dseg.nii.gz",
          "space-individual_atlas-CIT168_desc-refined_dseg.nii.gz",
          "space-individual_desc-brain_mask.nii.gz")


def run_variant(name: str, work: Path) -> Path:
    """Generate the variant's phantom under ``work`` and run the workflow; return the
    derivatives folder."""
    from brainiron.phantom import generate_phantom

    phantom, config = VARIANTS[name]
    bids = work / "bids"
    generate_phantom(bids, **phantom)
    out = work / "out"
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="2")
    cmd = [sys.executable, "-m", "brainiron.cli", "run", str(bids), str(out), "--cores", "2",
           "--config", *(f"{k}={v}" for k, v in config.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: brainiron run failed:\n{proc.stderr[-3000:]}")
    return out / "brainiron"


def collect(deriv: Path) -> tuple[dict[str, Path], dict[str, np.ndarray]]:
    """The group tables (name → path) and the label images (relative path → array)."""
    import nibabel as nib

    from brainiron import layout

    tables = {n: layout.group_path(deriv, name) for n, name in TABLES.items()}
    images = {}
    for anat in sorted(deriv.glob("sub-*/**/anat")):
        key = "_".join(anat.relative_to(deriv).parts[:-1])
        for suffix in IMAGES:
            path = anat / f"{key}_{suffix}"
            if path.exists():
                images[str(path.relative_to(deriv))] = np.asanyarray(nib.load(path).dataobj)
    return tables, images


def main() -> None:
    import tempfile

    for name in VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            deriv = run_variant(name, Path(tmp))
            tables, images = collect(deriv)
            dest = DATA / name
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            for n, path in tables.items():
                shutil.copy(path, dest / n)
            np.savez_compressed(dest / "images.npz", **images)
            print(f"{name}: {len(tables)} tables, {len(images)} images -> {dest}")


if __name__ == "__main__":
    main()
