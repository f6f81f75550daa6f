# Registration to MNI152NLin2009cAsym (ANTs) and the atlas labels on the subject's grid.

XFM_TO_NATIVE = f"{SUBJECT_DIR}_from-{TEMPLATE}_to-individual_mode-image"
XFM_TO_TEMPLATE = f"{SUBJECT_DIR}_from-individual_to-{TEMPLATE}_mode-image"
NATIVE_ATLAS = f"{SUBJECT_DIR}_space-individual_atlas-{ATLAS}"


rule register:
    input:
        validated=f"{SUBJECT_DIR}_desc-validated_inputs.json",
        image=lambda w: str(subject(w).registration_image),
        contrast=lambda w: contrast_map(w)[0],
    output:
        xfm_forward=f"{XFM_TO_NATIVE}_xfm.nii.gz",
        xfm_inverse=f"{XFM_TO_TEMPLATE}_xfm.nii.gz",
        dseg=f"{NATIVE_ATLAS}_dseg.nii.gz",
        dseg_tsv=f"{NATIVE_ATLAS}_dseg.tsv",
        probseg=f"{NATIVE_ATLAS}_probseg.nii.gz",
        probseg_json=f"{NATIVE_ATLAS}_probseg.json",
        brain_mask=f"{SUBJECT_DIR}_space-individual_desc-brain_mask.nii.gz",
        qc=f"{SUBJECT_DIR}_desc-registration_qc.json",
    params:
        subject=lambda w: subject(w).to_dict(),
        settings=config["registration"],
        contrast_kind=lambda w: contrast_map(w)[1],
    threads: config["threads"]
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/{{folder}}/{{key}}_register.log",
    benchmark:
        f"{DERIV}/benchmarks/{{folder}}/{{key}}_register.tsv",
    resources:
        mem_mb=config["registration"]["mem_mb"],
    script:
        "../scripts/step.py"
