"""Rule ``relaxometry``: R2* (1/s), T2* (s), S0 and goodness of fit from MEGRE magnitude."""

from __future__ import annotations

import numpy as np

from .. import layout
from ..io import load_nifti, read_json, save_nifti, write_json
from ..masks import foreground_mask
from ..relaxometry import fit_r2star, r2star_sidecar
from ..settings import RelaxometrySettings
from ..sidecars import relaxometry_sidecars, source_uri


def main(smk) -> None:
    settings = RelaxometrySettings.from_config(smk.params.settings)
    validated = read_json(smk.input.validated)
    echo_paths = list(smk.input.echoes)
    echoes = []
    affine = None
    for path in echo_paths:
        data, img = load_nifti(path)
        echoes.append(data)
        affine = img.affine
    fit = fit_r2star(echoes, validated["subject"]["echo_times"],
                     mask=foreground_mask(echoes[0]), method=settings.method,
                     threads=smk.threads)
    del echoes
    for name in ("r2star", "t2star", "s0", "goodness"):
        save_nifti(getattr(fit, name), getattr(smk.output, name), affine, dtype=np.float32)
    deriv = layout.deriv_of(smk.output.r2star, smk.wildcards.key)
    echoes = [source_uri(p, smk.params.bids_dir, deriv) for p in echo_paths]
    r2star = r2star_sidecar(fit, validated["field_strength_T"], echoes)
    sidecars = relaxometry_sidecars(r2star)
    for name in ("r2star_json", "t2star_json", "s0_json", "goodness_json"):
        write_json(sidecars[name], getattr(smk.output, name))
