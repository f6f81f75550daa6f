# brainiron: regional brain iron from QSM / R2* / multi-echo GRE in a BIDS dataset.
#
#   snakemake --cores 2                                   # the built-in phantom
#   snakemake --cores 8 --config bids_dir=/data/ds000001  # your dataset
#
# Outputs: <output_dir>/brainiron/ (BIDS-Derivatives); the group tables are in
# <output_dir>/brainiron/group/. Rules are thin: each calls one brainiron.steps function.
import sys

from snakemake.utils import min_version, validate

from brainiron.errors import BrainironError
from brainiron.workflow import check_config, check_writable, remove_failed_outputs

min_version("8.20")


configfile: "config/config.yaml"


try:  # one-line errors naming the key, before Snakemake's own validation
    check_config(config)
    check_writable(config["output_dir"])
except BrainironError as exc:
    sys.exit(f"brainiron: error: {exc}")
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/relaxometry.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/regions.smk"
include: "workflow/rules/tables.smk"


rule all:
    default_target: True
    input:
        final_outputs,


onerror:
    # Nothing stale may stay for a subject whose rule failed (its logs stay).
    remove_failed_outputs(DERIV)


onsuccess:
    print(
        f"brainiron: done. Tables: {DERIV}/group/regions.tsv (long, one row per subject x map "
        f"x region x hemisphere), {DERIV}/group/regions_wide.tsv (wide), "
        f"{DERIV}/group/group_comparison.tsv; report: {DERIV}/report/index.html; "
        f"failures: {DERIV}/group/failed.tsv"
    )
