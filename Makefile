# Two entry points on a fresh clone: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH, or run: make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m eyechart.demo

lint: $(STAMP) typecheck
	$(BIN)/ruff check src tests bench conformance loadtests
	$(BIN)/ruff format --check src tests bench conformance loadtests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy src/eyechart

test: $(STAMP) lint
	$(BIN)/pytest -q tests

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) fixtures/.cache
