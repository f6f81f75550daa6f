# Shared definitions: where things go, which subjects there are, file names per subject.
import sys
from pathlib import Path

from brainiron.bids import discover
from brainiron.errors import BrainironError
from brainiron.steps import read_failures

OUT = config["output_dir"]
DERIV = f"{OUT}/brainiron"
PHANTOM = not config["bids_dir"]
BIDS_DIR = f"{OUT}/phantom" if PHANTOM else config["bids_dir"]
TEMPLATE = "MNI152NLin2009cAsym"
ATLAS = "CIT168"
SUBJECT_DIR = f"{DERIV}/{{folder}}/anat/{{key}}"
# Contrast-aware refinement of the small nuclei (rule refine) on or off.
REFINE = bool((config.get("refinement") or {}).get("enabled", False))


wildcard_constraints:
    folder=r"sub-[a-zA-Z0-9]+(/ses-[a-zA-Z0-9]+)?",
    key=r"sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?",


_DATASET = []


def dataset():
    """The discovered BIDS dataset (after the phantom exists, in phantom mode)."""
    if PHANTOM and not Path(BIDS_DIR).exists():
        # Only while the phantom is missing: asking a finished checkpoint again hides
        # missing per-subject outputs from Snakemake (seen with 9.15).
        checkpoints.phantom.get()
    if not _DATASET:
        try:
            _DATASET.append(
                discover(
                    BIDS_DIR,
                    participant_label=config.get("participant_label") or None,
                    select=config.get("select") or {},
                    t1w_grid=config["registration"]["t1w_grid"],
                )
            )
        except BrainironError as exc:
            sys.exit(f"brainiron: error: {exc}")
        for subj in _DATASET[0].failed:
            print(f"brainiron: skipping {subj.key}: {subj.errors[0]}", file=sys.stderr)
    return _DATASET[0]


def subjects():
    """Subjects (x sessions) that passed discovery and are not excluded."""
    excluded = set(config.get("exclude") or [])
    return [s for s in dataset().valid if s.key not in excluded]


def subject(wildcards):
    for subj in dataset().valid:
        if subj.key == wildcards.key:
            return subj
    raise ValueError(f"unknown subject {wildcards.key}")


def folder_of(subj):
    return "/".join(p for p in (subj.participant_id, subj.session_id) if p)


def subject_file(subj, name):
    """Path of a per-subject output, e.g. subject_file(s, 'desc-regions_stats.tsv')."""
    return f"{DERIV}/{folder_of(subj)}/anat/{subj.key}_{name}"


def needs_r2star_fit(subj):
    return (
        "R2starmap" in config["maps"]
        and not ({"R2starmap", "T2starmap"} & set(subj.maps))
        and len(subj.megre) >= 2
    )


def contrast_map(wildcards):
    """(path, kind) of the map the dentate is segmented on: chi, else R2* or T2*, else fitted."""
    subj = subject(wildcards)
    for kind in ("Chimap", "R2starmap", "T2starmap"):
        if kind in subj.maps:
            return str(subj.maps[kind]), kind
    return subject_file(subj, "R2starmap.nii.gz"), "derived"


def raw_inputs(wildcards):
    """Every raw file of the subject that brainiron reads (changes trigger re-runs)."""
    subj = subject(wildcards)
    files = {kind: str(path) for kind, path in subj.maps.items()}
    files.update({f"echo{k}": str(p) for k, p in enumerate(subj.megre, start=1)})
    if subj.t1w:
        files["T1w"] = str(subj.t1w)
    return files


def final_outputs(wildcards):
    """Everything `all` asks for: the group tables and every subject's own table.

    Listing the subjects' tables here (not only through the group table) makes a deleted
    subject folder a missing target, so Snakemake redoes that subject (Snakemake >= 7.7
    does not rebuild missing intermediate files whose consumers are up to date).
    """
    names = ["regions.tsv", "regions.json", "regions_wide.tsv", "regions_wide.json",
             "failed.tsv", "ignored.tsv", "group_comparison.tsv", "group_comparison.json"]
    return ([f"{DERIV}/group/{n}" for n in names] + [f"{DERIV}/dataset_description.json",
                                                      f"{DERIV}/report/index.html",
                                                      f"{DERIV}/logs/check.json"]
            + all_stats(wildcards))


def derived_maps(wildcards):
    subj = subject(wildcards)
    if needs_r2star_fit(subj):
        return {"R2starmap": subject_file(subj, "R2starmap.nii.gz")}
    return {}


def quantified_maps(wildcards):
    subj = subject(wildcards)
    return [str(p) for kind, p in subj.maps.items()] + list(derived_maps(wildcards).values())


def all_stats(wildcards):
    return [subject_file(s, "desc-regions_stats.tsv") for s in subjects()]


def failed_subjects(wildcards):
    """Subjects not in the tables: discovery errors, and excluded subjects with the error
    their last run left (``brainiron run`` excludes subjects whose rules failed)."""
    out = [{"subject": s.key, "stage": "discovery", "error": s.errors[0]}
           for s in dataset().failed]
    records = read_failures(DERIV)
    for key in config.get("exclude") or []:
        record = records.get(key)
        if record:
            out.append({"subject": key, "stage": record["rule"], "error": record["error"]})
    return out


def ignored_files(wildcards):
    table = dataset().ignored_table()
    return table.to_dict("records")


def refined_labels(wildcards):
    """The refined label image when refinement is on, else nothing."""
    if not REFINE:
        return []
    return f"{NATIVE_ATLAS}_desc-refined_dseg.nii.gz".format(
        folder=wildcards.folder, key=wildcards.key
    )
