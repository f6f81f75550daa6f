# The HTML QC report, in two steps.
#
# report_subject: per subject (x session), in parallel and re-made only when that subject's
# files change, its report piece in <deriv>/sub-X[/ses-Y]/figures/ (brainiron.layout): its
# own page with the nuclei overlays on the registration image and on each quantified map of
# its plan, a thumbnail and a JSON record (written last; the report reads it).
#
# report: the group page. Its inputs are exactly the files it reads: the group tables, the
# derivatives' dataset_description.json (the run's configuration) and, per subject in
# subjects() order, the registration QC and its piece's record (written last by
# report_subject, after the page and thumbnail it links; so the rule also runs after every
# image the pieces draw). params.subjects: each subject's key and its maps' names and source
# kinds (the methods count them). It draws the group figures only; each subject is a lazily
# loaded thumbnail linking to its page. The phantom's truth tables only for the phantom.
from brainiron.phantom import truth_path


rule report_subject:
    input:
        qc=out("registration_qc"),
        labels=out("dseg"),
        labels_tsv=out("dseg_tsv"),
        registration=lambda w: plan(w).overlay_image,
        maps=lambda w: [path for path, _ in plan(w).maps.values()],
    output:
        page=layout.figure_pattern(DERIV, "report_subject"),
        thumbnail=layout.figure_pattern(DERIV, "report_thumbnail"),
        record=layout.figure_pattern(DERIV, "report_subject_json"),
    params:
        maps=lambda w: [[name, kind] for name, (_, kind) in plan(w).maps.items()],
        index=group_out("report"),
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("report_subject"),
    benchmark:
        subject_benchmark("report_subject")
    resources:
        mem_mb=2000,
    script:
        "../scripts/report_subject.py"


rule report:
    input:
        regions=group_out("regions"),
        comparison=group_out("group_comparison"),
        failed=group_out("failed"),
        ignored=group_out("ignored"),
        description=group_out("dataset_description"),
        qc=subject_outputs("registration_qc"),
        pieces=lambda w: [
            str(layout.figure_path(DERIV, "report_subject_json", s.key)) for s in subjects()
        ],
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
