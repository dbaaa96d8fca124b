# The two quickstart commands: `make demo` and `make test`.
# Both create .venv with the interpreter in $(PYTHON) (3.11+) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ROWS   ?= 2000000

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/scaler demo --rows $(ROWS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -ra --durations=15

lint: $(VENV)/.installed-test
	$(BIN)/ruff check scaler tests
	$(BIN)/ruff format --check scaler tests

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run --rows $(ROWS)

clean:
	rm -rf scaler-demo .pytest_cache
