# The two commands of the README: `make bench` and `make test`. Each sets itself up first.
# PYTHON=/path/to/python picks the interpreter (e.g. one that already has a CUDA JAX).
PYTHON ?= python3
VENV ?= .venv
RB := $(VENV)/bin/rackbench
SUITE ?= default
RESULTS ?= results
REPORTS ?= reports

export PYTHON VENV

.PHONY: setup bench test nightly clean

setup:
	@./scripts/bootstrap

bench: setup
	$(RB) run --suite $(SUITE) --out $(RESULTS)

test: setup
	$(VENV)/bin/python -m pytest -q

# Exit codes are compare's (0 nothing worse, 1 worse, 3 not comparable), but make reports
# every failure as 2: cron and CI should call `.venv/bin/rackbench nightly` directly.
nightly: setup
	$(RB) nightly --suite $(SUITE) --results $(RESULTS) --report-dir $(REPORTS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
