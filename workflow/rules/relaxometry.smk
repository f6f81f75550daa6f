# R2*, T2* and S0 from MEGRE magnitude echoes, for subjects without an R2* (or T2*) map.


rule relaxometry:
    input:
        validated=f"{SUBJECT_DIR}_desc-validated_inputs.json",
        echoes=lambda w: [str(p) for p in subject(w).megre],
    output:
        r2star=f"{SUBJECT_DIR}_R2starmap.nii.gz",
        r2star_json=f"{SUBJECT_DIR}_R2starmap.json",
        t2star=f"{SUBJECT_DIR}_T2starmap.nii.gz",
        s0=f"{SUBJECT_DIR}_S0map.nii.gz",
        goodness=f"{SUBJECT_DIR}_desc-goodness_R2starmap.nii.gz",
    params:
        subject=lambda w: subject(w).to_dict(),
        method=config["relaxometry"]["method"],
    threads: config["threads"]
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/{{folder}}/{{key}}_relaxometry.log",
    benchmark:
        f"{DERIV}/benchmarks/{{folder}}/{{key}}_relaxometry.tsv",
    resources:
        mem_mb=config["relaxometry"]["mem_mb"],
    script:
        "../scripts/step.py"
