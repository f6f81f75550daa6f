# The HTML QC report. Its inputs are exactly the files the report reads: the group tables,
# the derivatives' dataset_description.json (the run's configuration) and, per subject in
# subjects() order, the registration QC, the label image with its lookup table, and the
# images the nuclei are drawn on: the registration image and the quantified maps of the
# subject's plan (params.subjects: each subject's key and its maps' names and source kinds,
# which say how input.maps splits). The phantom's truth tables only for the phantom.
from brainiron.phantom import truth_path


rule report:
    input:
        regions=group_out("regions"),
        comparison=group_out("group_comparison"),
        failed=group_out("failed"),
        ignored=group_out("ignored"),
        description=group_out("dataset_description"),
        qc=subject_outputs("registration_qc"),
        labels=subject_outputs("dseg"),
        labels_tsv=subject_outputs("dseg_tsv"),
        registration=lambda w: [plan_of(s.key).overlay_image for s in subjects()],
        maps=lambda w: [path for s in subjects() for path, _ in plan_of(s.key).maps.values()],
        truth=lambda w: [str(truth_path(BIDS_DIR, s.key)) for s in subjects()]
        if PHANTOM
        else [],
    output:
        report=group_out("report"),
        figures=directory(group_out("report_figures")),
    params:
        subjects=lambda w: [
            [s.key, [[name, kind] for name, (_, kind) in plan_of(s.key).maps.items()]]
            for s in subjects()
        ],
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
