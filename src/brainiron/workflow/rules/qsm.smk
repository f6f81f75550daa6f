# χ (ppm) reconstructed from MEGRE magnitude + phase echoes (brainiron.qsm), for subjects
# with phase and no Chimap; it is then quantified like any χ map (source kind "qsm").


rule qsm:
    input:
        validated=out("validated_inputs"),
        magnitude=lambda w: list(plan(w).echoes),
        phase=lambda w: list(plan(w).phase),
    output:
        chi=out("chi"),
        chi_json=out("chi_json"),
        local_field=out("local_field"),
        local_field_json=out("local_field_json"),
        mask=out("qsm_mask"),
        mask_json=out("qsm_mask_json"),
    params:
        # workers (FFT threads) come from the rule's threads.
        settings=stage_settings("qsm", drop=("mem_mb", "workers")),
    threads: config["threads"]
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("qsm"),
    benchmark:
        subject_benchmark("qsm")
    resources:
        mem_mb=config["qsm"]["mem_mb"],
    script:
        "../scripts/qsm.py"
