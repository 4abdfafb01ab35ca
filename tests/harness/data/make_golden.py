"""Regenerate the checked-in golden result sets: `.venv/bin/python tests/harness/data/make_golden.py`.

The expected compare output lives in tests/harness/test_compare.py; regenerating these files
with different seeds changes it, on purpose.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import synth  # noqa: E402

from harness.resultset import save  # noqa: E402


def golden_pair():
    rng = np.random.default_rng(5)
    s = lambda med, n=20, sd=0.02: synth.samples(rng, med, n, sd)  # noqa: E731
    base = [
        synth.make_case("matmul/fp32/256", "matmul", s(1.0e-3), params={"n": 256}, flops=2 * 256**3, bytes=3 * 4 * 256**2),
        synth.make_case("matmul/fp32/512", "matmul", s(8.0e-3), params={"n": 512}, flops=2 * 512**3, bytes=3 * 4 * 512**2),
        synth.make_case("matmul/bf16/512", "matmul", s(4.0e-3), params={"n": 512}, flops=2 * 512**3, bytes=3 * 2 * 512**2),
        synth.make_case("matmul/fp16/256", "matmul", s(0.9e-3), params={"n": 256}),
        synth.make_case("matmul/fp8/256", "matmul", status="skipped", reason="fp8 unsupported on cpu", params={"n": 256}),
        synth.make_case("attention/causal/1024", "attention", s(5.0e-3, 6, 0.25), params={"seq": 1024}),
        synth.make_case("attention/full/512", "attention", s(2.0e-3), params={"seq": 512}),
        synth.make_case("membw/copy/64MiB", "membw", s(1.0e10), params={"bytes": 2**26}, direction="higher"),
        synth.make_case("collective/allreduce/1MiB", "collective", status="failed", reason="no second device",
                        params={"bytes": 2**20}),
    ]
    base[7].unit = "bytes_per_s"
    new = [
        synth.make_case("matmul/fp32/256", "matmul", s(1.2e-3), params={"n": 256}, flops=2 * 256**3, bytes=3 * 4 * 256**2),
        synth.make_case("matmul/fp32/512", "matmul", s(6.0e-3), params={"n": 512}, flops=2 * 512**3, bytes=3 * 4 * 512**2),
        synth.make_case("matmul/bf16/512", "matmul", s(4.0e-3), params={"n": 512}, flops=2 * 512**3, bytes=3 * 2 * 512**2),
        synth.make_case("matmul/fp8/256", "matmul", status="skipped", reason="fp8 unsupported on cpu", params={"n": 256}),
        synth.make_case("attention/causal/1024", "attention", s(5.5e-3, 6, 0.25), params={"seq": 1024}),
        synth.make_case("attention/full/512", "attention", status="failed", reason="RESOURCE_EXHAUSTED: out of memory",
                        params={"seq": 512}),
        synth.make_case("membw/copy/64MiB", "membw", s(0.8e10), params={"bytes": 2**26}, direction="higher"),
        synth.make_case("collective/allreduce/1MiB", "collective", s(2.0e-4), params={"bytes": 2**20}),
        synth.make_case("train_step/tiny", "train_step", s(3.0e-2), params={"layers": 2}),
    ]
    new[6].unit = "bytes_per_s"
    b = synth.make_set(base, created_utc="2026-11-01T02:00:00Z", commit="1111111100000000000000000000000000000000")
    n = synth.make_set(new, created_utc="2026-11-02T02:00:00Z", commit="2222222200000000000000000000000000000000")
    return b, n


def main() -> None:
    b, n = golden_pair()
    save(b, HERE / "base.json")
    save(n, HERE / "new.json")
    # The same cases measured on another machine with another device kind.
    other = synth.make_set(n.cases, machine_id="gpu-box", fingerprint_id="fp-gggg", device_kind="NVIDIA H200",
                           created_utc="2026-11-02T03:00:00Z", commit="3333333300000000000000000000000000000000",
                           hostname="gpu-host", jax="0.11.2")
    save(other, HERE / "other_machine.json")
    # Plain pytest-benchmark files: drop our section, keep pytest-benchmark's own keys.
    for src, dst in (("base.json", "pytest_benchmark_base.json"), ("new.json", "pytest_benchmark_new.json")):
        doc = json.loads((HERE / src).read_text())
        del doc["rackbench"]
        for bench in doc["benchmarks"]:
            bench.pop("extra_info", None)
        (HERE / dst).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
