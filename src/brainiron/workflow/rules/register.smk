# Registration to MNI152NLin2009cAsym (ANTs) and the atlas labels on the subject's grid.


rule register:
    input:
        validated=out("validated_inputs"),
        image=lambda w: plan(w).registration_image,
        contrast=lambda w: plan(w).contrast_image,
    output:
        xfm_forward=out("xfm_forward"),
        xfm_inverse=out("xfm_inverse"),
        xfm_forward_json=out("xfm_forward_json"),
        xfm_inverse_json=out("xfm_inverse_json"),
        dseg=out("dseg"),
        dseg_tsv=out("dseg_tsv"),
        dseg_json=out("dseg_json"),
        probseg=out("probseg"),
        probseg_json=out("probseg_json"),
        brain_mask=out("brain_mask"),
        brain_mask_json=out("brain_mask_json"),
        qc=out("registration_qc"),
    params:
        # the source dataset, for the sidecars' BIDS URIs (bids:raw:)
        bids_dir=BIDS_DIR,
        registration_kind=lambda w: plan(w).registration_kind,
        contrast_kind=lambda w: plan(w).contrast_kind,
        # t1w_grid is read by discovery only.
        settings=stage_settings("registration", drop=("mem_mb", "t1w_grid")),
    threads: config["threads"]
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("register"),
    benchmark:
        subject_benchmark("register")
    resources:
        mem_mb=config["registration"]["mem_mb"],
    script:
        "../scripts/register.py"
