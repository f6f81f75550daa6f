# Shared definitions: where things go, which subjects there are, and each subject's plan.
# Every derivative path comes from brainiron.layout (data/io_spec.json).
import sys
from pathlib import Path

from brainiron import layout
from brainiron.bids.cache import cache_path, discover_cached
from brainiron.errors import BrainironError
from brainiron.failures import read_failures

OUT = config["output_dir"]
DERIV = str(layout.run_path(OUT, "derivatives"))
PHANTOM = not config["bids_dir"]
BIDS_DIR = str(layout.run_path(OUT, "phantom")) if PHANTOM else config["bids_dir"]
# Contrast-aware refinement of the small nuclei (rule refine) on or off.
REFINE = bool(config["refinement"]["enabled"])


def out(name):
    """Snakemake pattern of a subject output ({folder}, {key} wildcards)."""
    return layout.subject_pattern(DERIV, name)


def group_out(name):
    return str(layout.group_path(DERIV, name))


def subject_log(rule):
    return layout.log_path(DERIV, "subject_log", rule=rule)


def subject_benchmark(rule):
    return layout.log_path(DERIV, "subject_benchmark", rule=rule)


def group_log(rule):
    return layout.log_path(DERIV, "group_log", rule=rule)


def group_benchmark(rule):
    return layout.log_path(DERIV, "group_benchmark", rule=rule)


def stage_settings(section, drop=("mem_mb",)):
    """A stage's settings as params (what changes its result) without its resources
    (mem_mb) and what only discovery reads, so that asking for more memory re-runs nothing."""
    return {k: v for k, v in config[section].items() if k not in drop}


_DATASET = []


def dataset():
    """The discovered BIDS dataset (after the phantom exists, in phantom mode)."""
    if PHANTOM and not Path(BIDS_DIR).exists():
        # Only while the phantom is missing: asking a finished checkpoint again hides
        # missing per-subject outputs from Snakemake (seen with 9.15).
        checkpoints.phantom.get()
    if not _DATASET:
        try:
            # Once per dataset state (brainiron.bids.cache): the cache under the output
            # folder is checked against the dataset's listing by the controlling process;
            # a cluster job (which starts Snakemake again) uses what that process wrote.
            _DATASET.append(
                discover_cached(
                    BIDS_DIR,
                    cache_path(OUT),
                    participant_label=config["participant_label"] or None,
                    select=config["select"],
                    t1w_grid=config["registration"]["t1w_grid"],
                    trust=not workflow.is_main_process,
                )
            )
        except BrainironError as exc:
            sys.exit(f"brainiron: error: {exc}")
        for subj in _DATASET[0].failed:
            print(f"brainiron: skipping {subj.key}: {subj.errors[0]}", file=sys.stderr)
    return _DATASET[0]


def subjects():
    """Subjects (x sessions) that passed discovery and are not excluded."""
    excluded = set(config["exclude"])
    return [s for s in dataset().valid if s.key not in excluded]


_SUBJECTS = {}
_PLANS = {}


def subject_of(key):
    """The discovered Subject of ``key`` (``sub-01`` or ``sub-01_ses-2``)."""
    if not _SUBJECTS:
        _SUBJECTS.update({s.key: s for s in dataset().valid})
    try:
        return _SUBJECTS[key]
    except KeyError:
        raise ValueError(f"unknown subject {key}") from None


def subject(wildcards):
    return subject_of(wildcards.key)


def plan_of(key):
    """The plan (brainiron.bids.Plan) of subject ``key``: computed once per subject and run."""
    if key not in _PLANS:
        _PLANS[key] = subject_of(key).plan(config["maps"], DERIV)
    return _PLANS[key]


def plan(wildcards):
    """The plan of the wildcards' subject."""
    return plan_of(wildcards.key)


def coregistration(name):
    """Input function: the coregister rule's output ``name`` when the subject's T1w is
    coregistered to its maps (on its own grid), else nothing."""
    return lambda w: (
        str(layout.subject_path(DERIV, name, w.key)) if plan(w).coregistration_image else []
    )


def raw_inputs(wildcards):
    """Every raw file of the subject that validation reads (changes trigger re-runs)."""
    subj = subject(wildcards)
    files = {kind: str(path) for kind, path in subj.maps.items()}
    files.update({f"echo{k}": str(p) for k, p in enumerate(subj.megre, start=1)})
    files.update({f"phase{k}": str(p) for k, p in enumerate(subj.phase, start=1)})
    if subj.t1w:
        files["T1w"] = str(subj.t1w)
    return files


def subject_outputs(name):
    """Input function: output ``name`` of every subject to process."""
    return lambda wildcards: [str(layout.subject_path(DERIV, name, s.key))
                              for s in subjects()]


def final_outputs(wildcards):
    """Everything `all` asks for: the group tables and every subject's own table.

    Listing the subjects' tables here (not only through the group table) makes a deleted
    subject folder a missing target, so Snakemake redoes that subject (Snakemake >= 7.7
    does not rebuild missing intermediate files whose consumers are up to date).
    """
    names = ["regions", "regions_json", "regions_wide", "regions_wide_json", "failed",
             "failed_json", "ignored", "ignored_json", "group_comparison",
             "group_comparison_json", "dataset_description", "readme", "bidsignore",
             "atlas_description", "report", "check"]
    return [group_out(n) for n in names] + subject_outputs("regions_stats")(wildcards)


def failed_subjects(wildcards):
    """Subjects not in the tables: discovery errors, and excluded subjects with the error
    their last run left (``brainiron run`` excludes subjects whose rules failed)."""
    found = [{"subject": s.key, "stage": "discovery", "error": s.errors[0]}
             for s in dataset().failed]
    records = read_failures(DERIV)
    for key in config["exclude"]:
        record = records.get(key)
        if record:
            found.append({"subject": key, "stage": record["rule"], "error": record["error"]})
    return found


def ignored_files(wildcards):
    return dataset().ignored_table().to_dict("records")
