"""Rule ``qsm``: χ (ppm), local field (ppm) and QSM mask from MEGRE magnitude + phase."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..io import load_nifti, read_json, save_nifti, write_json
from ..qsm import QSMSettings, qsm_sidecars, reconstruct


def _stack(paths):
    """Echoes as one (X, Y, Z, E) float32 array and the first echo's affine."""
    arrays, affine = [], None
    for path in paths:
        data, img = load_nifti(path)
        arrays.append(data)
        affine = img.affine if affine is None else affine
    return np.stack(arrays, axis=-1), affine


def main(smk) -> None:
    settings = replace(QSMSettings.from_config(smk.params.settings), workers=int(smk.threads))
    validated = read_json(smk.input.validated)
    magnitude, affine = _stack(smk.input.magnitude)
    phase, _ = _stack(smk.input.phase)
    chi, local, mask, record = reconstruct(
        magnitude, phase, validated["subject"]["echo_times"], affine,
        validated["field_strength_T"], settings,
        names=(str(smk.input.magnitude[0]), str(smk.input.phase[0])))
    del magnitude, phase
    out = smk.output
    sidecars = qsm_sidecars(record, smk.input.magnitude, smk.input.phase)
    save_nifti(chi, out.chi, affine, dtype=np.float32)
    write_json(sidecars["chi"], out.chi_json)
    save_nifti(local, out.local_field, affine, dtype=np.float32)
    write_json(sidecars["local_field"], out.local_field_json)
    save_nifti(mask.astype(np.uint8), out.mask, affine, dtype=np.uint8)
    write_json(sidecars["mask"], out.mask_json)
