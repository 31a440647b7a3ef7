# The two set-up commands of the README:
#   make run    the whole DAG on the embedded default setting (Fashion-MNIST, CPU)
#   make test   the test suite, without the slow real checks (a few minutes)
# and `make test-slow`: those real checks (the whole smoke DAG of every paper, the real SLURM run);
# CI runs both.
# Both create .venv from the pinned requirements and make sure Fashion-MNIST is on disk first; `make run`
# also removes the locks of a Snakemake that was killed, when no other Snakemake works here.
VENV ?= .venv
CORES ?= 2
# the workflow's jobs call the `kdrepro` command: the venv's bin comes first on their PATH
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: run test test-slow setup
run: setup
	bash workflow/scripts/unlock_stale.sh
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	$(VENV)/bin/python -m pytest -q -m "not slow" --durations=15

test-slow: setup
	$(VENV)/bin/python -m pytest -q -m slow --durations=15

setup:
	bash workflow/scripts/bootstrap.sh $(VENV)
