# Group tables: every subject's regional statistics in one long and one wide table.

rule group:
    input:
        stats=all_stats,
    output:
        regions=f"{DERIV}/group/regions.tsv",
        regions_json=f"{DERIV}/group/regions.json",
        wide=f"{DERIV}/group/regions_wide.tsv",
        wide_json=f"{DERIV}/group/regions_wide.json",
        failed=f"{DERIV}/group/failed.tsv",
        ignored=f"{DERIV}/group/ignored.tsv",
        description=f"{DERIV}/dataset_description.json",
    params:
        participants=lambda w: str(Path(BIDS_DIR) / "participants.tsv"),
        failed=failed_subjects,
        ignored=ignored_files,
        config=config,
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/group.log",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"


rule compare:
    input:
        regions=f"{DERIV}/group/regions.tsv",
    output:
        tsv=f"{DERIV}/group/group_comparison.tsv",
        json=f"{DERIV}/group/group_comparison.json",
    params:
        settings=config["group_comparison"],
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/compare.log",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"
