# Registration to MNI152NLin2009cAsym (ANTs) and the atlas labels on the subject's grid.


rule register:
    input:
        validated=out("validated_inputs"),
        image=lambda w: plan(w).registration_image,
        contrast=lambda w: plan(w).contrast_image,
    output:
        xfm_forward=out("xfm_forward"),
        xfm_inverse=out("xfm_inverse"),
        dseg=out("dseg"),
        dseg_tsv=out("dseg_tsv"),
        probseg=out("probseg"),
        probseg_json=out("probseg_json"),
        brain_mask=out("brain_mask"),
        qc=out("registration_qc"),
    params:
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
