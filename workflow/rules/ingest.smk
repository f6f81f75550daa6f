# Input: the built-in phantom (when no bids_dir is given) and per-subject validation.


if PHANTOM:

    checkpoint phantom:
        output:
            directory(BIDS_DIR),
        params:
            settings=config["phantom"],
        conda:
            "../envs/brainiron.yaml"
        log:
            f"{OUT}/logs/phantom.log",
        benchmark:
            f"{OUT}/benchmarks/phantom.tsv",
        resources:
            mem_mb=2000,
        script:
            "../scripts/step.py"


rule validate:
    input:
        unpack(raw_inputs),
    output:
        f"{SUBJECT_DIR}_desc-validated_inputs.json",
    params:
        subject=lambda w: subject(w).to_dict(),
        field_strength=config["field_strength"],
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/{{folder}}/{{key}}_validate.log",
    benchmark:
        f"{DERIV}/benchmarks/{{folder}}/{{key}}_validate.tsv",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"
