# kdrepro: five knowledge-distillation papers as one DAG.
#   snakemake                      everything of the setting (default: config/config.yaml)
#   snakemake takd_table2          one table; `snakemake --list-target-rules` lists them all
#   snakemake --configfile config/paper.yaml --workflow-profile profiles/slurm
from snakemake.utils import min_version

from kdrepro.config import validate as validate_setting
from kdrepro.data.folders import export_roots as export_data_roots
from kdrepro.teachers import export_paths as export_teacher_paths

min_version("9.0")


# the embedded default, unless settings are given with --configfile (they replace it, not merge into it)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# unknown keys and bad values stop here, with the dotted key named; defaults are filled in
config.update(validate_setting(config))
# the roots of the setting's image folders, for every job (which inherits the environment): a run's spec
# names a folder by its content, never by its path, so that moving or linking the images retrains nothing
export_data_roots(config)
# the same for the external teachers' files: a run names a file by its sha256, never by its path
export_teacher_paths(config)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/targets.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
