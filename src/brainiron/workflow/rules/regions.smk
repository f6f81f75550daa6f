# Regional statistics of every map in every region, on the subject's own grid.


rule regions:
    input:
        validated=out("validated_inputs"),
        dseg=out("dseg"),
        probseg=out("probseg"),
        probseg_json=out("probseg_json"),
        brain_mask=out("brain_mask"),
        qc=out("registration_qc"),
        maps=lambda w: [path for path, _ in plan(w).maps.values()],
        dseg_refined=lambda w: out("refined_dseg").format(**w) if REFINE else [],
        # chi_reference csf: the template's CSF class comes through the forward transform.
        xfm_forward=out("xfm_forward") if config["chi_reference"] == "csf" else [],
    output:
        tsv=out("regions_stats"),
        json=out("regions_stats_json"),
    params:
        map_names=lambda w: list(plan(w).maps),
        map_kinds=lambda w: [kind for _, kind in plan(w).maps.values()],
        chi_reference=config["chi_reference"],
        csf_reference_depth_mm=config["csf_reference_depth_mm"],
        refined_regions=config["refinement"]["regions"] if REFINE else [],
    conda:
        "../envs/brainiron.yaml"
    log:
        subject_log("regions"),
    benchmark:
        subject_benchmark("regions")
    resources:
        mem_mb=2000,
    script:
        "../scripts/regions.py"
