# Registration to MNI152NLin2009cAsym (ANTs) and the atlas labels on the subject's grid; a
# T1w on its own grid is first coregistered to the maps' reference image (rule coregister).


rule coregister:
    input:
        t1w=lambda w: plan(w).registration_image,
        reference=lambda w: plan(w).coregistration_image,
        validated=out("validated_inputs"),
    output:
        xfm=out("xfm_coregistration"),
        qc=out("coregistration_qc"),
    params:
        reference_kind=lambda w: plan(w).coregistration_kind,
        settings=stage_settings("registration", drop=("mem_mb", "t1w_grid")),
    threads: config["threads"]
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("coregister"),
    benchmark:
        subject_benchmark("coregister")
    resources:
        mem_mb=2000,
    script:
        "../scripts/coregister.py"


rule register:
    input:
        validated=out("validated_inputs"),
        image=lambda w: plan(w).registration_image,
        contrast=lambda w: plan(w).contrast_image,
        coregistration=coregistration("xfm_coregistration"),
        coregistration_qc=coregistration("coregistration_qc"),
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
