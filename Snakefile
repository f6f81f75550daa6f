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
from brainiron.workflow import check_config

min_version("8.20")


configfile: "config/config.yaml"


try:  # one-line errors naming the key, before Snakemake's own validation
    check_config(config)
except BrainironError as exc:
    sys.exit(f"brainiron: error: {exc}")
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/relaxometry.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/regions.smk"
include: "workflow/rules/tables.smk"


rule all:
    default_target: True
    input:
        final_outputs,


onsuccess:
    print(
        f"brainiron: done. Tables: {DERIV}/group/regions.tsv (long, one row per subject x map "
        f"x region x hemisphere), {DERIV}/group/regions_wide.tsv (wide), "
        f"{DERIV}/group/group_comparison.tsv; report: {DERIV}/report/index.html; "
        f"failures: {DERIV}/group/failed.tsv"
    )
