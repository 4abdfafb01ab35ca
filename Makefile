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
# head-to-head projection with the calibration `rackbench project` would choose: the default
# file or a GPU set in results/reference/, never the run just made (versus says why in one
# line), then the harness's own timing checks on this machine (reported; a busy machine can
# fail them).
bench: setup
	$(RB) run --suite $(SUITE) --out $(RESULTS)
	@mkdir -p $(REPORTS)
	$(RB) versus --plot $(REPORTS)/versus.png
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
