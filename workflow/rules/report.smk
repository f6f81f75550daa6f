# The HTML QC report.


rule report:
    input:
        regions=group_out("regions"),
        comparison=group_out("group_comparison"),
        failed=group_out("failed"),
        description=group_out("dataset_description"),
        labels=subject_outputs("dseg"),
        qc=subject_outputs("registration_qc"),
    output:
        group_out("report"),
    params:
        phantom_truth=f"{BIDS_DIR}/derivatives/phantom-truth" if PHANTOM else "",
        bids_dir=BIDS_DIR,
    conda:
        "../envs/brainiron.yaml"
    log:
        group_log("report"),
    benchmark:
        group_benchmark("report")
    resources:
        mem_mb=2000,
    script:
        "../scripts/report.py"
