# Regional statistics of every map in every region, on the subject's own grid.

rule regions:
    input:
        validated=f"{SUBJECT_DIR}_desc-validated_inputs.json",
        dseg=f"{NATIVE_ATLAS}_dseg.nii.gz",
        probseg=f"{NATIVE_ATLAS}_probseg.nii.gz",
        probseg_json=f"{NATIVE_ATLAS}_probseg.json",
        brain_mask=f"{SUBJECT_DIR}_space-individual_desc-brain_mask.nii.gz",
        qc=f"{SUBJECT_DIR}_desc-registration_qc.json",
        maps=quantified_maps,
        dseg_refined=refined_labels,
    output:
        tsv=f"{SUBJECT_DIR}_desc-regions_stats.tsv",
        json=f"{SUBJECT_DIR}_desc-regions_stats.json",
    params:
        subject=lambda w: subject(w).to_dict(),
        derived=derived_maps,
        maps=config["maps"],
        chi_reference=config["chi_reference"],
        refined_regions=(config.get("refinement") or {}).get("regions", []),
    conda:
        "../envs/brainiron.yaml"
    log:
        f"{DERIV}/logs/{{folder}}/{{key}}_regions.log",
    benchmark:
        f"{DERIV}/benchmarks/{{folder}}/{{key}}_regions.tsv",
    resources:
        mem_mb=2000,
    script:
        "../scripts/step.py"
