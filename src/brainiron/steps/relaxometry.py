"""Rule ``relaxometry``: R2* (1/s), T2* (s), S0 and goodness of fit from MEGRE magnitude."""

from __future__ import annotations

import numpy as np

from .. import __version__
from ..io import load_nifti, read_json, save_nifti, write_json
from ..registration import foreground_mask
from ..relaxometry import fit_r2star
from ..settings import RelaxometrySettings


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
    mask = foreground_mask(echoes[0])
    fit = fit_r2star(echoes, validated["subject"]["echo_times"], mask=mask,
                     method=settings.method, threads=smk.threads)
    del echoes
    out = smk.output
    save_nifti(fit.r2star, out.r2star, affine, dtype=np.float32)
    save_nifti(fit.t2star, out.t2star, affine, dtype=np.float32)
    save_nifti(fit.s0, out.s0, affine, dtype=np.float32)
    save_nifti(fit.goodness, out.goodness, affine, dtype=np.float32)
    write_json({
        "Units": "1/s",
        "Description": "R2* fitted by brainiron from the MEGRE magnitude echoes (NaN outside "
                       "the magnitude's foreground and where the fit is undefined)",
        "FitMethod": fit.method,
        "EchoTime": list(fit.echo_times),
        "MagneticFieldStrength": validated["field_strength_T"],
        "Sources": [str(p) for p in echo_paths],
        "GeneratedBy": {"Name": "brainiron", "Version": __version__},
    }, out.r2star_json)
