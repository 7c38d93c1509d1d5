# Two commands on a fresh machine: `make run` (the main job) and `make test` (the tests, as CI runs them).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run run-synthetic test test-fast lint

$(BIN)/.installed: setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,offline]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python train.py fit --config configs/offline/sequential_reptile.yaml

run-synthetic: install
	$(BIN)/python train.py fit --config configs/synthetic/sequential_reptile.yaml

test: install
	$(BIN)/python -m pytest -m "slow or not slow"

test-fast: install  # the default suite, on two worker processes
	$(BIN)/python -m pytest -n 2 --dist worksteal

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
