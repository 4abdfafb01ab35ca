# The two commands of the README: `make bench` and `make test`. Each sets itself up first.
# PYTHON=/path/to/python picks the interpreter (e.g. one that already has a CUDA JAX).
PYTHON ?= python3
VENV ?= .venv
RB := $(VENV)/bin/rackbench
SUITE ?= default
RESULTS ?= results
REPORTS ?= reports

export PYTHON VENV

.PHONY: setup bench speed test nightly clean

setup:
	@./scripts/bootstrap

# Measure here, store the set, print its table (with the closing-the-loop line), then the
# head-to-head projection calibrated by the run just made when it is a complete set measured on
# a catalog GPU (else by results/reference/ or the default file; versus says which and why in
# one line), and what that calibration does to the published rows (validate's per-mode lines),
# then the harness's own timing checks on this machine (reported; a busy machine can fail them).
bench: setup
	$(RB) run --suite $(SUITE) --out $(RESULTS)
	@mkdir -p $(REPORTS)
	$(RB) versus --calibration auto:$(RESULTS) --plot $(REPORTS)/versus.png
	$(RB) validate --calibration auto:$(RESULTS) --summary
	@echo "timing checks on this machine (tests/bench/test_timing_properties.py):"
	-$(VENV)/bin/python -m pytest -q -m bench -p no:cacheprovider tests/bench/test_timing_properties.py

# Speed targets (pytest-benchmark figures): compare, history, plan search, start-up.
speed: setup
	$(VENV)/bin/python -m pytest -m bench -p no:cacheprovider --benchmark-enable tests/bench

test: setup
	$(VENV)/bin/python -m pytest -q

# Exit codes are compare's (0 nothing worse, 1 worse, 3 not comparable), but make reports
# every failure as 2: cron and CI should call `.venv/bin/rackbench nightly` directly.
nightly: setup
	$(RB) nightly --suite $(SUITE) --results $(RESULTS) --report-dir $(REPORTS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
