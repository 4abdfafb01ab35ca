# The two commands of the README: `make bench` and `make test`. Each sets itself up first.
# PYTHON=/path/to/python picks the interpreter (e.g. one that already has a CUDA JAX).
PYTHON ?= python3
VENV ?= .venv
RB := $(VENV)/bin/rackbench
SUITE ?= default
RESULTS ?= results

export PYTHON VENV

.PHONY: setup bench test nightly clean

setup:
	@./scripts/bootstrap

bench: setup
	$(RB) run --suite $(SUITE) --out $(RESULTS)

test: setup
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
