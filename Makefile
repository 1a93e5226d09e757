# Two entry points for a fresh machine (Python 3.11, apt, PyPI):
#   make demo   set up .venv and run the main job end to end (ETL -> train -> evaluate -> register -> promote)
#   make test   set up .venv (and the services the tests start) and run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# hashed locks (scripts/lock.sh): pip itself first, then every extra and the dev tools, and
# setuptools and wheel to install the project without build isolation
LOCKS  := requirements/pip.lock requirements/all-dev.lock requirements/build.lock

.PHONY: demo test setup lint clean

setup: $(STAMP)

# the locked dependencies, then the project itself without resolving anything
$(STAMP): $(LOCKS) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/pip.lock
	$(BIN)/pip install --quiet --require-hashes -r requirements/all-dev.lock -r requirements/build.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: setup
	$(BIN)/trajectory run $(ARGS)

test: setup
	bash scripts/test.sh $(ARGS)

lint: setup
	$(BIN)/ruff check trajectory serving dags plugins tests && $(BIN)/mypy

clean:
	rm -rf artifacts .pytest_cache
