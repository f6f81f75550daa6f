# Group tables: every subject's regional statistics in one long and one wide table, the
# group comparison, and the final check.


rule group:
    input:
        stats=subject_outputs("regions_stats"),
    output:
        regions=group_out("regions"),
        regions_json=group_out("regions_json"),
        wide=group_out("regions_wide"),
        wide_json=group_out("regions_wide_json"),
        failed=group_out("failed"),
        ignored=group_out("ignored"),
        description=group_out("dataset_description"),
    params:
        participants=lambda w: str(Path(BIDS_DIR) / "participants.tsv"),
        failed=failed_subjects,
        ignored=ignored_files,
        config=config,
    conda:
        "../envs/brainiron.yaml"
    log:
        group_log("group"),
    benchmark:
        group_benchmark("group")
    resources:
        mem_mb=2000,
    script:
        "../scripts/group.py"


rule compare:
    input:
        regions=group_out("regions"),
    output:
        tsv=group_out("group_comparison"),
        json=group_out("group_comparison_json"),
    params:
        settings=config["group_comparison"],
    conda:
        "../envs/brainiron.yaml"
    log:
        group_log("compare"),
    benchmark:
        group_benchmark("compare")
    resources:
        mem_mb=2000,
    script:
        "../scripts/compare.py"


rule check:
    input:
        failed=group_out("failed"),
        report=group_out("report"),
    output:
        group_out("check"),
    conda:
        "../envs/brainiron.yaml"
    log:
        group_log("check"),
    benchmark:
        group_benchmark("check")
    resources:
        mem_mb=500,
    script:
        "../scripts/check.py"
