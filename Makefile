# Two entry points for a fresh machine:
#   make demo  - set up the environment and run the offline demo
#   make test  - set up the environment and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint clean browser

setup: $(VENV)/.installed

# torch is pinned by constraints.txt to the CPU wheel; GPU users edit that file (see README).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/lionloop demo

# Debian's chromium for the report's browser test (the leading '-': without root the test skips
# with its reason instead of failing the whole run).
browser:
	-bash scripts/setup_browser.sh

test: setup browser
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs build *.egg-info
