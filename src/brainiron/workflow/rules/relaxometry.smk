# R2*, T2* and S0 from MEGRE magnitude echoes, for subjects without an R2* (or T2*) map.


rule relaxometry:
    input:
        validated=out("validated_inputs"),
        echoes=lambda w: list(plan(w).echoes),
    output:
        r2star=out("r2star"),
        r2star_json=out("r2star_json"),
        t2star=out("t2star"),
        t2star_json=out("t2star_json"),
        s0=out("s0"),
        s0_json=out("s0_json"),
        goodness=out("r2star_goodness"),
        goodness_json=out("r2star_goodness_json"),
    params:
        # the source dataset, for the sidecars' BIDS URIs (bids:raw:)
        bids_dir=BIDS_DIR,
        settings=stage_settings("relaxometry"),
    threads: config["threads"]
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("relaxometry"),
    benchmark:
        subject_benchmark("relaxometry")
    resources:
        mem_mb=config["relaxometry"]["mem_mb"],
    script:
        "../scripts/relaxometry.py"
