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
            str(layout.run_path(OUT, "phantom_log")),
        benchmark:
            str(layout.run_path(OUT, "phantom_benchmark"))
        resources:
            mem_mb=2000,
        script:
            "../scripts/phantom.py"


rule validate:
    input:
        unpack(raw_inputs),
    output:
        out("validated_inputs"),
    params:
        # What discovery established (files, declared units, echo times, field strength);
        # not the list of ignored files, which must not trigger re-runs.
        subject=lambda w: subject(w).to_dict(with_ignored=False),
        field_strength=config["field_strength"],
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("validate"),
    benchmark:
        subject_benchmark("validate")
    resources:
        mem_mb=2000,
    script:
        "../scripts/validate.py"
