# brainiron: regional brain iron from QSM / R2* / multi-echo GRE in a BIDS dataset.
#
#   snakemake --cores 2                                   # the built-in phantom
#   snakemake --cores 8 --config bids_dir=/data/ds000001  # your dataset
#
# The workflow ships inside the Python package (src/brainiron/workflow/: Snakefile, rules,
# scripts, schemas, envs, profiles; defaults in src/brainiron/config/config.yaml), so that
# an installed wheel runs the same rules (`brainiron run`); `workflow/` and `config/` here
# are links to those folders. This file only includes the packaged Snakefile.


include: "workflow/Snakefile"


# Rules of an included file are never Snakemake's default target: this one is (the same
# files as the packaged `rule all`).
rule default:
    default_target: True
    input:
        final_outputs,
