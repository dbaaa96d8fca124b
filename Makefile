# The two quickstart commands: `make demo` and `make test`.
# Both create .venv with the interpreter in $(PYTHON) (3.11+) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ROWS   ?= 2000000

.PHONY: demo test lint bench clean chromium

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

# The report test renders report.html in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(VENV)/.installed-test chromium
	$(BIN)/python -m pytest -ra --durations=15

lint: $(VENV)/.installed-test
	$(BIN)/ruff check scaler tests benchmarks
	$(BIN)/ruff format --check scaler tests benchmarks
	$(BIN)/mypy scaler

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run --rows $(ROWS)

clean:
	rm -rf scaler-demo .pytest_cache
