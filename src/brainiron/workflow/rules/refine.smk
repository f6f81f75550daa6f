# Optional (refinement.enabled): SN / RN / STN boundaries refined from the chi or R2* contrast.


rule refine:
    input:
        validated=out("validated_inputs"),
        dseg=out("dseg"),
        contrast=lambda w: plan(w).contrast_image,
    output:
        dseg=out("refined_dseg"),
        tsv=out("refinement_qc"),
    params:
        settings=config["refinement"],
        contrast_kind=lambda w: plan(w).contrast_kind,
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("refine"),
    benchmark:
        subject_benchmark("refine")
    resources:
        mem_mb=2000,
    script:
        "../scripts/refine.py"
