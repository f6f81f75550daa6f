# brainiron: regional brain iron from QSM / R2* / multi-echo GRE in a BIDS dataset.
#
#   snakemake --cores 2                                   # the built-in phantom
#   snakemake --cores 8 --config bids_dir=/data/ds000001  # your dataset
#
# Outputs: <output_dir>/brainiron/ (BIDS-Derivatives); the group tables are in
# <output_dir>/brainiron/group/. Rules are thin: each names its own script, which runs one
# brainiron.steps module; every derivative path comes from brainiron.layout.
import sys

from snakemake.utils import min_version, validate

from brainiron.errors import BrainironError
from brainiron.failures import remove_failed_outputs
from brainiron.workflow import check_config, check_writable

min_version("8.20")


configfile: "config/config.yaml"


try:  # one-line errors naming the key, before Snakemake's own validation
    check_config(config)
    check_writable(config["output_dir"])
except BrainironError as exc:
    sys.exit(f"brainiron: error: {exc}")
validate(config, "workflow/schemas/config.schema.yaml")


wildcard_constraints:
    folder=r"sub-[a-zA-Z0-9]+(/ses-[a-zA-Z0-9]+)?",
    key=r"sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?",


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/relaxometry.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/regions.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs,


onerror:
    # Nothing stale may stay for a subject whose rule failed (its logs stay).
    remove_failed_outputs(DERIV)


onsuccess:
    print(
        f"brainiron: done. Tables: {group_out('regions')} (long, one row per subject x map "
        f"x region x hemisphere), {group_out('regions_wide')} (wide), "
        f"{group_out('group_comparison')}; report: {group_out('report')}; "
        f"failures: {group_out('failed')}"
    )
