# Two entry points for a fresh machine (Python 3.11, apt, PyPI):
#   make demo   set up .venv and run the main job end to end (ETL -> train -> evaluate -> register -> promote)
#   make test   set up .venv (and the services the tests start) and run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/trajectory run $(ARGS)

test: setup
	bash scripts/test.sh $(ARGS)

lint: setup
	$(BIN)/ruff check trajectory serving dags plugins tests && $(BIN)/mypy

clean:
	rm -rf artifacts .pytest_cache
