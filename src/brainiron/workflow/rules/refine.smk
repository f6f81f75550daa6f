# Optional (refinement.enabled): SN / RN / STN boundaries refined from the chi or R2* contrast.


rule refine:
    input:
        validated=out("validated_inputs"),
        dseg=out("dseg"),
        dseg_json=out("dseg_json"),
        contrast=lambda w: plan(w).contrast_image,
    output:
        dseg=out("refined_dseg"),
        dseg_json=out("refined_dseg_json"),
        tsv=out("refinement_qc"),
        tsv_json=out("refinement_qc_json"),
    params:
        # the source dataset, for the sidecars' BIDS URIs (bids:raw:)
        bids_dir=BIDS_DIR,
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
