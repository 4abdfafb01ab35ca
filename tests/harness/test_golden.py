"""Golden outputs of the model commands: each case runs the real entry point (harness.cli.main)
and compares what it prints with tests/harness/golden/<case>.<format>. A table or Markdown file
must match to the character; JSON and CSV must match in every key, column and string, and in
every number to 1e-9 (the last bits of numpy's exp and log may differ between CPUs).

After an intended change to an output, regenerate the files and review their diff:

    RACKBENCH_GOLDEN=update .venv/bin/python -m pytest -q -p no:randomly tests/harness/test_golden.py
    git diff tests/harness/golden/

`rackbench devices` is left out: its output is this machine's (hostname, memory, device count);
tests/harness/test_cli_formats.py checks its forms instead.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from harness import cli

sys.path.insert(0, str(Path(__file__).parent))
from golden_files import EXT, GOLDEN, check  # noqa: E402

TRAIN = ["project", "--model", "llama3-70b", "--system", "hgx-h100", "--chips", "64", "--tp", "8",
         "--pp", "4", "--global-batch", "128"]
SEARCH = ["project", "--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8",
          "--global-batch", "64", "--top", "3"]
DECODE = ["project", "--model", "deepseek-r1", "--system", "gb200-nvl72", "--chips", "48",
          "--mode", "decode", "--precision", "fp8", "--tpot-ms", "50"]
PREFILL = ["project", "--model", "deepseek-r1", "--system", "cloudmatrix-384", "--chips", "32",
           "--mode", "prefill", "--precision", "int8", "--seq-len", "4096"]
ALL_REDUCE = ["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8",
              "--bytes", "1GiB"]
SWEEP = ["collective", "--system", "hgx-h800", "--op", "all_to_all", "--ranks", "16",
         "--ranks-per-domain", "8", "--sweep"]
PLAN = ["plan", "--device-kind", "NVIDIA H200", "--stage", "vendor"]

# (case name, argv, formats)
CASES = [
    ("project-train", TRAIN, ("table", "json", "csv")),
    ("project-search", SEARCH, ("table", "csv")),
    ("project-decode", DECODE, ("table", "json", "csv")),
    ("project-prefill", PREFILL, ("table", "csv")),
    ("collective", ALL_REDUCE, ("table", "json", "csv")),
    ("collective-sweep", SWEEP, ("table", "csv")),
    ("catalog", ["catalog"], ("table", "csv", "markdown")),
    ("catalog-h100", ["catalog", "h100"], ("table", "json", "csv", "markdown")),
    ("catalog-ub-cm384", ["catalog", "ub-cm384"], ("table", "json")),
    ("validate-collective", ["validate", "--mode", "collective"], ("table", "json", "csv", "markdown")),
    ("versus-llama3-405b", ["versus", "--workload", "llama3-405b"], ("table",)),
    ("plan-vendor", PLAN, ("table", "json", "csv")),
    ("model-template", ["model", "template"], ("table",)),
    ("model-list", ["model", "list"], ("table", "csv")),
    ("model-show", ["model", "show", "deepseek-v3"], ("table", "json", "csv")),
]
PARAMS = [pytest.param(argv, name, fmt, id=f"{name}.{EXT[fmt]}")
          for name, argv, fmts in CASES for fmt in fmts]


@pytest.fixture
def no_reference_sets(tmp_path, monkeypatch):
    """The default calibration, whatever sits in results/reference/ of this checkout."""
    for name in ("project", "versus"):
        monkeypatch.setattr(importlib.import_module(f"harness.cli.{name}"), "REFERENCE_DIR",
                            tmp_path)


@pytest.mark.parametrize("argv, name, fmt", PARAMS)
def test_golden(argv, name, fmt, capsys, no_reference_sets):
    code = cli.main([*argv, *([] if fmt == "table" else ["--format", fmt])])
    got = capsys.readouterr().out
    assert code == 0, got
    check(name, fmt, got)


# The measurement commands' golden files, which test_golden_measure.py checks.
MEASUREMENT_COMMANDS = ("show", "compare", "history", "fit-fabric", "vendor-check", "nightly", "migrate", "report")


def test_every_golden_file_has_a_case():
    """A golden file whose case was removed would sit there checked by nothing."""
    names = {f"{name}.{EXT[fmt]}" for name, _, fmts in CASES for fmt in fmts}
    assert {p.name for p in GOLDEN.iterdir() if not p.name.startswith(MEASUREMENT_COMMANDS)} == names


# JSON keys without a unit suffix, by what makes them unitless. A new key must carry its unit
# (ARCHITECTURE.md) or join one of these groups.
UNITLESS = {
    # names, labels and text
    "name", "description", "source", "sources", "notes", "path", "model", "system", "mode",
    "kind", "fabric_kind", "vendor", "family", "device", "device_kind_patterns", "calibration",
    "plan", "stage", "part", "method", "algorithm", "op", "id", "metric", "unit", "key", "gap",
    "infeasible_reason", "input", "acts_on", "pool", "precision", "attention_precision",
    "attention_impl", "recompute", "ceilings", "costs", "misses", "mfu_definition",
    "mfu_palm_definition", "hfu_definition", "calibration_why",
    # what priced a projection (clusters.calibration.Calibration.priced_by): labels and a count
    "priced_by", "kernel", "entry", "calls",
    # switches
    "feasible", "skipped", "dropout", "overlap", "sequence_parallel", "tp_comm_overlap",
    "dp_overlap", "ep_overlap", "prefill_aligned", "in_network_reduction", "mla",
    # counts (of chips, ranks, degrees, layers, heads, experts, elements, tokens, sequences, rows)
    "chips", "systems", "devices", "devices_per_package", "ranks", "ranks_per_domain", "domains",
    "ep_ranks", "tp", "pp", "vpp", "dp", "cp", "ep", "zero", "micro_batch", "global_batch",
    "seq_len", "context", "input_len", "output_len", "n_layers", "n_heads", "n_kv_heads",
    "hidden_size", "n_routed_experts", "params", "active_params", "mtp_params", "shape_elements",
    "compiles", "cases", "rows", "inside", "gaps", "within_row_target", "samples", "seed",
    # fractions and ratios
    "mfu", "mfu_palm", "hfu", "efficiency", "inr_efficiency", "mtp_acceptance", "error",
    "fraction", "median_abs_error", "max_abs_error", "median_abs_error_all", "cold_error",
    "median_abs_cold_error", "cold_rows", "cold_commit",
    "median_half_width", "swing", "bias", "sd", "input_log_mean", "input_log_sd", "quantiles",
    "range",
    # a model key's value (model show) and a published row's figures, in the row's "unit"
    "value", "published", "projected",
    # tables of named parts
    "band", "band_coverage", "model_form", "sensitivity", "inputs", "memory", "moe_a2a",
    "points", "summary", "targets", "stages", "keys", "per_pool",
}
# The measurement commands' keys (test_golden_measure.py), by the same groups.
UNITLESS |= {
    # names, labels, text and a set's identity
    "case", "group", "status", "reason", "verdict", "mark", "direction", "dtype", "figure", "note",
    "above_ceiling", "timing_method", "run_noise_source", "not_comparable_reasons", "messages",
    "warnings", "commit", "created_utc", "machine_id", "fingerprint_id", "suite", "platform",
    "catalog_chip", "compute_capability", "software", "python", "python_compiler",
    "python_implementation", "executable", "jax", "jaxlib", "numpy", "optax", "torch", "xla_flags",
    "jax_env", "vendor_device", "result_set", "directory", "sets", "base", "new", "baseline",
    "html", "markdown", "images", "reports", "fabric",
    # switches
    "complete", "comparable", "strict", "migrated", "passed", "same_device", "compute_from_run",
    # counts (of samples, repetitions, resamples, devices, SMs, cases per verdict), versions, exit codes
    "n_samples", "base_samples", "new_samples", "n_compared", "reps_per_sample", "bootstrap_resamples",
    "count", "local_count", "process_count", "counts", "sm_count", "ok", "failed", "faster", "slower",
    "inconclusive", "same", "newly failing", "fixed", "missing", "not comparable", "dof",
    "schema_version_before", "schema_version_after", "exit_code", "compare_exit_code",
    # fractions, ratios and log-scale spreads
    "fraction_of_peak", "roofline_fraction", "above_ceiling_fraction", "iqr_over_median",
    "other_cpu_fraction", "ratio", "ratio_ci_low", "ratio_ci_high", "slowdown", "geomean_slowdown",
    "min_ratio", "factor", "alpha", "interval_level", "sampling_sd_log", "run_noise_sd_log",
    "family_run_noise_sd_log", "relative_residuals", "rms_relative_residual", "prediction_error95",
    "t95",
    # fit-fabric's slope, seconds per byte (the unit is the name), and its covariance
    "s_per_byte", "s_per_byte_ci95", "cov",
    # tables of named parts
    "families", "comparison", "change_points",
}
UNIT_SUFFIXES = ("_s", "_w", "_j", "_bytes", "_per_s", "_usd", "_per_token", "_per_chip",
                 "_per_system", "_per_step", "_tokens", "_flops")
FREE_KEYS = ("peak_flops_per_s", "breakdown_s", "sources", "notes", "per_pool")  # keys are data


def test_json_keys_carry_units():
    bad = set()

    def walk(x, parent=""):
        if isinstance(x, dict):
            for k, v in x.items():
                base = k.removesuffix("_p10").removesuffix("_p90")
                if parent not in FREE_KEYS and base not in UNITLESS and not base.endswith(UNIT_SUFFIXES):
                    bad.add(k)
                walk(v, k)
        elif isinstance(x, list):
            for v in x:
                walk(v, parent)

    for path in GOLDEN.glob("*.json"):
        walk(json.loads(path.read_text()))
    assert not bad, f"JSON keys without a unit: {sorted(bad)}"
