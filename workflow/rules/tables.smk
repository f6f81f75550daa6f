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
    benchmark:
        f"{DERIV}/benchmarks/group.tsv",
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
    benchmark:
        f"{DERIV}/benchmarks/compare.tsv",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"


rule report:
    input:
        regions=f"{DERIV}/group/regions.tsv",
        comparison=f"{DERIV}/group/group_comparison.tsv",
        failed=f"{DERIV}/group/failed.tsv",
        description=f"{DERIV}/dataset_description.json",
        labels=lambda w: [subject_file(s, f"space-individual_atlas-{ATLAS}_dseg.nii.gz")
                          for s in subjects()],
        qc=lambda w: [subject_file(s, "desc-registration_qc.json") for s in subjects()],
    output:
        f"{DERIV}/report/index.html",
    params:
        phantom_truth=f"{BIDS_DIR}/derivatives/phantom-truth" if PHANTOM else "",
        bids_dir=BIDS_DIR,
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/report.log",
    benchmark:
        f"{DERIV}/benchmarks/report.tsv",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"


rule check:
    input:
        failed=f"{DERIV}/group/failed.tsv",
        report=f"{DERIV}/report/index.html",
    output:
        f"{DERIV}/logs/check.json",
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/check.log",
    benchmark:
        f"{DERIV}/benchmarks/check.tsv",
    resources:
        mem_mb=500,
    script:
        "../scripts/step.py"
