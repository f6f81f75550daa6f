# Optional (refinement.enabled): SN / RN / STN boundaries refined from the chi or R2* contrast.


rule refine:
    input:
        validated=f"{SUBJECT_DIR}_desc-validated_inputs.json",
        dseg=f"{NATIVE_ATLAS}_dseg.nii.gz",
        contrast=lambda w: contrast_map(w)[0],
    output:
        dseg=f"{NATIVE_ATLAS}_desc-refined_dseg.nii.gz",
        tsv=f"{SUBJECT_DIR}_desc-refinement_qc.tsv",
    params:
        subject=lambda w: subject(w).to_dict(),
        settings=config.get("refinement") or {},
        contrast_kind=lambda w: contrast_map(w)[1],
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/{{folder}}/{{key}}_refine.log",
    benchmark:
        f"{DERIV}/benchmarks/{{folder}}/{{key}}_refine.tsv",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"

