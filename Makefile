# Two commands for a new user (see README.md):
#   make reproduce   set up .venv and regenerate reports/ on the default data
#   make test        set up .venv if needed and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
# RETRAIN=1: retrain the shipped models (hours on a CPU; the live model's recipe is for a GPU) and report them beside the shipped ones.
RETRAIN ?=
# Offline data and weights live beside the project by default; override with DEIDKIT_SHARED=/path.
export DEIDKIT_SHARED ?= $(abspath ../shared)

.PHONY: setup reproduce test lint clean-cache

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=24" "setuptools>=64,<82" wheel
	# torch first, pinned: the CPU machines take these wheels from local disk.
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e ".[dev,study]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (deidkit)"
	touch $@

setup: $(BIN)/.installed

reproduce: setup
ifneq ($(RETRAIN),)
	# fadenet: the correction is 64 face-detail components, the warp 16 modes of real faces' geometry
	# (~25 CPU-minutes in all)
	$(BIN)/deidkit train fadenet --profile subspace
	$(BIN)/deidkit train fadenet --profile subspace_push_m
	$(BIN)/deidkit train fadenet --profile subspace_shape
	# the shipped live model was trained on a GPU (profiles gpu, gpu_finetune: ~9 minutes on an H200, ~10 hours on 2 CPU cores)
	$(BIN)/deidkit train live --profile gpu
	$(BIN)/deidkit train live --profile gpu_finetune
	# the default live model: that generator fine-tuned against an online adaptive attacker (600 steps, ~5 CPU minutes)
	$(BIN)/deidkit train live --profile defend --overrides 'init_from="runs/live-gpu_finetune/stages/stage1.pt"'
	# the live model's detail stage (2x enlargement with detail of its own; ~20 CPU minutes)
	$(BIN)/deidkit train detail --profile quick
	$(BIN)/deidkit reports --profile $(PROFILE) --retrain
else
	$(BIN)/deidkit reports --profile $(PROFILE)
endif

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check deidkit tests
