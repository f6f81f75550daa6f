"""Registration of a subject to MNI152NLin2009cAsym with ANTs, and the atlas back on its grid.

One pipeline (:func:`register`) for every registration image — T1w, magnitude (MEGRE), R2*
and χ (against the χ-contrast template, :func:`chi_template`) — with one QC
(:func:`registration_qc`, per-contrast limits in :data:`QC_LIMITS`; the labels' contrast on
the maps, :func:`label_contrast_qc`); :func:`native_atlas`
then puts the atlas labels, their probabilities, the dentate and the brain mask on the
maps' grid. Modules:

* :mod:`.pipeline` — :func:`register` and its stages; :func:`describe` (methods text);
* :mod:`.templates` — the T1 template and the χ-contrast template;
* :mod:`.transforms` — the transform chain, its composed field, saving and warping;
* :mod:`.qc` — :func:`registration_qc`, the QC record;
* :mod:`.coregister` — the T1w onto the maps' reference image (:func:`coregister`) when it
  lies on its own grid, and its QC;
* :mod:`.native` — :func:`native_atlas` (what the ``register`` rule writes);
* :mod:`.images` — images between nibabel (RAS+) and ANTs (LPS).

Masks live in :mod:`brainiron.masks` (re-exported here).
"""

from __future__ import annotations

from ..masks import chi_brain_mask, foreground_mask, template_brain_mask
from ..settings import RegistrationSettings
from .contrast_stage import (
    LOCAL_TEMPLATES,
    chi_local_stage,
    contrast_local_stage,
    global_stage_settings,
    refines_on_contrast,
)
from .coregister import (
    COREGISTRATION_LIMITS,
    COREGISTRATION_REFERENCES,
    Coregistration,
    coregister,
    coregistration_qc,
    coregistration_record,
    mirrored,
    normalised_mutual_information,
    read_coregistration,
    rigid_motion,
    with_coregistration,
)
from .images import from_ants, on_grid, resample_antialiased, to_ants
from .native import (
    NativeAtlas,
    label_lookup,
    maps_grid_warp,
    native_atlas,
    native_tissue_mask,
    probseg_header,
    probseg_sidecar,
    segmented_probabilities,
)
from .pipeline import (
    align_brain_masks,
    describe,
    local_stage,
    register,
    registration_input,
    scratch_dir,
    uses_chi_template,
)
from .qc import (
    IRON_CONTRAST_REGIONS,
    LABEL_CONTRAST_LIMITS,
    QC_LIMITS,
    RECORDED_SETTINGS,
    iron_contrast,
    label_contrast_qc,
    qc_failure,
    qc_flag,
    qc_limits,
    qc_record,
    registration_qc,
    settings_dict,
)
from .templates import (
    CHI_TEMPLATE_AGE_YEARS,
    TEMPLATES,
    chi_template,
    chi_template_values,
    r2star_template,
    r2star_template_values,
    template_brain_mask_image,
    template_data,
    template_image,
)
from .transforms import (
    FieldWarp,
    Registration,
    compose_forward,
    crop_box,
    cropped_affine,
    field_transform,
    forward_warp,
    save_transforms,
    warp_brain_mask,
    warp_image,
    warp_labels,
    warp_probabilities,
)

__all__ = [
    "COREGISTRATION_LIMITS",
    "COREGISTRATION_REFERENCES",
    "Coregistration",
    "coregister",
    "coregistration_qc",
    "coregistration_record",
    "mirrored",
    "normalised_mutual_information",
    "read_coregistration",
    "rigid_motion",
    "with_coregistration",
    "CHI_TEMPLATE_AGE_YEARS",
    "IRON_CONTRAST_REGIONS",
    "LOCAL_TEMPLATES",
    "LABEL_CONTRAST_LIMITS",
    "QC_LIMITS",
    "RECORDED_SETTINGS",
    "TEMPLATES",
    "FieldWarp",
    "NativeAtlas",
    "Registration",
    "RegistrationSettings",
    "align_brain_masks",
    "chi_local_stage",
    "chi_brain_mask",
    "chi_template",
    "chi_template_values",
    "compose_forward",
    "contrast_local_stage",
    "crop_box",
    "cropped_affine",
    "describe",
    "field_transform",
    "foreground_mask",
    "forward_warp",
    "from_ants",
    "global_stage_settings",
    "iron_contrast",
    "label_contrast_qc",
    "label_lookup",
    "local_stage",
    "maps_grid_warp",
    "native_atlas",
    "native_tissue_mask",
    "on_grid",
    "probseg_header",
    "probseg_sidecar",
    "qc_failure",
    "qc_flag",
    "qc_limits",
    "qc_record",
    "r2star_template",
    "r2star_template_values",
    "refines_on_contrast",
    "register",
    "registration_input",
    "registration_qc",
    "resample_antialiased",
    "save_transforms",
    "scratch_dir",
    "segmented_probabilities",
    "settings_dict",
    "template_brain_mask",
    "template_brain_mask_image",
    "template_data",
    "template_image",
    "to_ants",
    "uses_chi_template",
    "warp_brain_mask",
    "warp_image",
    "warp_labels",
    "warp_probabilities",
]
