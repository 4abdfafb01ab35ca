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

# Measure here, store the set, print its table (with the closing-the-loop line), then the
# head-to-head projection with the calibration `rackbench project` would choose.
bench: setup
	$(RB) run --suite $(SUITE) --out $(RESULTS)
	@mkdir -p $(REPORTS)
	$(RB) versus --plot $(REPORTS)/versus.png

test: setup
	$(VENV)/bin/python -m pytest -q

# Exit codes are compare's (0 nothing worse, 1 worse, 3 not comparable), but make reports
# every failure as 2: cron and CI should call `.venv/bin/rackbench nightly` directly.
nightly: setup
	$(RB) nightly --suite $(SUITE) --results $(RESULTS) --report-dir $(REPORTS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
