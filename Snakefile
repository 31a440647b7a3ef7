# kdrepro: five knowledge-distillation papers as one DAG.
#   snakemake                      everything of the setting (default: config/config.yaml)
#   snakemake takd_table2          one table; `snakemake --list-target-rules` lists them all
#   snakemake --configfile config/paper.yaml --workflow-profile profiles/slurm
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/targets.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
