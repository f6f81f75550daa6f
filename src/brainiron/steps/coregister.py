"""Rule ``coregister``: the T1w registered to the maps' reference image; the transform
(ITK text, maps world → T1w world) and its QC.

Only for subjects whose T1w lies on its own grid (``registration.t1w_grid: coregister``);
the ``register`` rule appends the transform to the template → T1w chain.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import InputError
from ..io import atomic_path, load_nifti, write_json
from ..settings import RegistrationSettings


def main(smk) -> None:
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(smk.threads))
    import ants

    from .. import registration as reg

    out = smk.output
    kind = smk.params.reference_kind
    settings = RegistrationSettings.from_config(smk.params.settings)
    t1w, t1w_img = load_nifti(smk.input.t1w)
    reference, ref_img = load_nifti(smk.input.reference)
    scratch = reg.scratch_dir(Path(out.qc).parent)
    try:
        result = reg.coregister(t1w, t1w_img.affine, reference, ref_img.affine, scratch,
                                settings, reference_kind=kind)
        record = reg.coregistration_record(result, smk.input.t1w, smk.input.reference,
                                           settings)
        if result.qc["flag"] and settings.on_qc_failure == "exclude":
            raise InputError(smk.input.t1w, (
                f"coregistration with {Path(smk.input.reference).name} failed QC "
                f"({result.qc['flag']}); the subject is left out (set "
                "registration.on_qc_failure: flag to keep it, flagged)"))
        with atomic_path(out.xfm) as tmp:
            ants.write_transform(ants.read_transform(result.forward), str(tmp))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_json(record, out.qc)
