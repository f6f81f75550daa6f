# Group tables: every subject's regional statistics in one long and one wide table, the
# failures and ignored files, the derivatives' dataset_description.json, the group
# comparison, and the final check. Params carry only what changes a rule's outputs.


rule group:
    input:
        stats=subject_outputs("regions_stats"),
        # the dataset's participants.tsv, when it has one
        participants=lambda w: [p for p in [f"{BIDS_DIR}/participants.tsv"] if Path(p).is_file()],
    output:
        regions=group_out("regions"),
        regions_json=group_out("regions_json"),
        wide=group_out("regions_wide"),
        wide_json=group_out("regions_wide_json"),
        failed=group_out("failed"),
        failed_json=group_out("failed_json"),
    params:
        iron=config["iron"],
        field_strength=config["field_strength"],
        failed=failed_subjects,
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


rule ignored:
    # The files brainiron does not use: their own rule, so that a new unused file in a
    # subject's folder re-makes only this list (and the report), not the group tables.
    localrule: True
    output:
        tsv=group_out("ignored"),
        json=group_out("ignored_json"),
    params:
        ignored=ignored_files,
    conda:
        "../envs/brainiron.yaml"
    log:
        group_log("ignored"),
    benchmark:
        group_benchmark("ignored")
    resources:
        mem_mb=500,
    script:
        "../scripts/ignored.py"


rule description:
    # Small text files, written where Snakemake runs, never a cluster job: the derivatives'
    # dataset_description.json (the run's configuration; the source dataset's License and
    # Authors), README.md, .bidsignore and the atlas description.
    localrule: True
    input:
        # the source dataset's description (the same name at every BIDS dataset's root)
        source=lambda w: [str(p) for p in [layout.group_path(BIDS_DIR, "dataset_description")]
                          if dataset() and p.is_file()],
    output:
        description=group_out("dataset_description"),
        readme=group_out("readme"),
        bidsignore=group_out("bidsignore"),
        atlas=group_out("atlas_description"),
    params:
        # dataset_description.json records the run's whole configuration.
        configuration=config,
        bids_dir=BIDS_DIR,
    conda:
        "../envs/brainiron.yaml"
    log:
        group_log("description"),
    benchmark:
        group_benchmark("description")
    resources:
        mem_mb=500,
    script:
        "../scripts/description.py"


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
