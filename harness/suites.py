"""Which cases a suite runs, sized to the device: seconds-to-minutes on a CPU, a few minutes
on one H200. `quick` is CPU-sized everywhere (tests, CI); `default` is what `make bench` runs;
`full` adds sizes for a thorough reference run."""
from __future__ import annotations

import re

from kernels.attention import attention_case
from kernels.base import Case
from kernels.decode_attention import decode_attention_case
from kernels.collectives import OPS as COLLECTIVE_OPS
from kernels.collectives import collective_case, collective_sweep
from kernels.matmul import grouped_matmul_case, matmul_case
from kernels.membw import rmsnorm_case, stream_case
from kernels.train_step import TinyLlama, part_cases, train_step_case

from clusters.flops import layer_gemms
from clusters.workloads import load_model
from harness.errors import UserError

SUITES = ("quick", "default", "full")

# Largest single-call cost a suite admits on a CPU, in FLOPs: a 2-core CPU does ~1e11 FLOP/s in
# fp32, and bf16 dots run several times slower there, so this keeps `make bench` near a minute.
_CPU_MAX_CASE_FLOPS = {"quick": 5e8, "default": 2e10, "full": 1.5e11}
# Largest input a default CPU case may draw: random generation runs at ~20 ns an element on a
# 2-core CPU, so the 70B LM head (131M elements) alone would cost seconds before timing starts.
_CPU_MAX_DEFAULT_INPUT_ELEMENTS = 64e6


def _matmul_sweep(sizes, dtypes) -> list[Case]:
    return [matmul_case(n, n, n, d) for d in dtypes for n in sizes]


# Models whose layer GEMMs the suite measures, at the shapes the projection prices for them
# (clusters.flops.layer_gemms, from the model files): dense Llama 3 at three sizes and
# DeepSeek-V3 (MLA and fine-grained MoE).
GEMM_MODELS = ("llama3-8b", "llama3-70b", "llama3-405b", "deepseek-v3")
# Decode-sized (memory-bound) layer GEMMs on a GPU: one dense model and the MoE one. They show
# how far weight streaming falls below a copy kernel; calibration leaves memory-bound shapes out
# (harness.studies.calibrate), so two models say as much as four, in fewer compiles.
DECODE_GEMM_MODELS = ("llama3-70b", "deepseek-v3")


def model_gemm_layouts(tps, token_counts, models=GEMM_MODELS) -> list[tuple[str, int, int, int]]:
    """(model, tp, ep, tokens per rank) the suite measures GEMMs at; experts are spread over
    the TP ranks' worth of chips (ep = tp), one expert group per TP group."""
    return [(model, tp, tp, tokens) for model in models for tp in tps
            for tokens in token_counts]


def _model_gemm_cases(tps, token_counts, dtype, chunks: bool = False,
                      models=GEMM_MODELS) -> list[Case]:
    """The layer GEMMs of GEMM_MODELS; `chunks` adds the shorter calls TP-communication overlap
    splits them into (the `full` suite's: the default suite's calibration reaches those sizes
    by interpolation, and keeps the staged GPU run within its budget)."""
    cases = []
    for name, tp, ep, tokens in model_gemm_layouts(tps, token_counts, models):
        model = load_model(name)
        for g in layer_gemms(model, tokens, tp, ep, chunks=chunks):
            label = f"{name}/{g.name}/tp{tp}/t{tokens}"
            cases.append(matmul_case(g.m, g.n, g.k, dtype, label=label, group="matmul_model"))
    return cases


def _attention_sweep(seqs, tokens, dtype, impls, heads=(32, 8), passes=("fwd", "fwd_bwd"),
                     masks=(True, False)) -> list[Case]:
    n_heads, n_kv = heads
    cases = []
    for impl in impls:
        for t in seqs:
            b = max(1, tokens // t)
            for causal in masks:
                for p in passes:
                    cases.append(attention_case(b, t, n_heads, n_kv, 128, causal, p, impl, dtype))
    return cases


def _cpu_cases(suite: str) -> list[Case]:
    if suite == "quick":
        cases = _matmul_sweep([128, 256], ["fp32"]) + _matmul_sweep([256], ["bf16", "fp16", "fp8"])
        cases += [
            matmul_case(32, 512, 4096, "fp32", label="llama3-8b/attn_out/tp8/t32", group="matmul_model"),
        ]
        cases += _attention_sweep([128], 128, "fp32", ("xla", "jnp", "cudnn"), heads=(4, 2))
        cases += [stream_case(1 << 20), rmsnorm_case(256, 1024, "fp32")]
        cases += [decode_attention_case("gqa", 2, 256, 8, 1, 64, dtype="fp32"),
                  grouped_matmul_case(4, 32, 128, 256, "fp32")]
        return cases
    sizes = [256, 512, 1024, 2048] + ([3072] if suite == "full" else [])
    cases = _matmul_sweep(sizes, ["fp32"]) + _matmul_sweep([256, 512, 1024], ["bf16"])
    cases += _matmul_sweep([1024], ["fp16", "fp8"])  # recorded as skipped, with the reason
    # 64 tokens a rank (a small micro-batch, or decode) keeps the real layer widths affordable
    cases += _model_gemm_cases([8], [64] if suite == "default" else [128, 512], "fp32",
                               chunks=suite == "full")
    seqs = [128, 256, 512] if suite == "default" else [256, 512, 1024, 2048]
    cases += _attention_sweep(seqs, 512 if suite == "default" else 1024, "fp32", ("xla", "jnp", "cudnn"), heads=(8, 2))
    cases += _attention_sweep([512], 512, "bf16", ("xla",), heads=(8, 2), passes=("fwd",))
    cases += [stream_case(1 << 22), stream_case(1 << 24), rmsnorm_case(4096, 4096, "fp32")]
    cases += [decode_attention_case("gqa", 8, 2048, 8, 1, 128, dtype="fp32"),
              decode_attention_case("mla", 4, 1024, 16, rows=2, dtype="fp32"),
              grouped_matmul_case(8, 64, 1024, 512, "fp32")]
    limit = _CPU_MAX_CASE_FLOPS[suite]
    cases = [c for c in cases if c.flops <= limit]
    if suite == "default":
        cases = [c for c in cases if c.group != "matmul_model"
                 or c.params["k"] * (c.params["m"] + c.params["n"]) <= _CPU_MAX_DEFAULT_INPUT_ELEMENTS]
    # the training step is the closing-the-loop case: admitted whatever its size, with the parts
    # the check prices it from at the step's own shapes (kernels.train_step.part_cases: its GEMMs
    # in their three layouts, its attention, the two backward loops XLA:CPU writes transposed)
    return cases + part_cases(TinyLlama(), "fp32") + [train_step_case(TinyLlama(), "fp32")]


# The cases held against torch on the same card (harness/vendor.py, vendor_baselines.py): its
# bf16 8192^3 matmul and its causal SDPA, B=1 T=8192, 32 heads (no GQA), head dim 128. The
# staged GPU reference run measures these first (`--filter` VENDOR_FILTER).
def vendor_cases() -> list[Case]:
    return [matmul_case(8192, 8192, 8192, "bf16"),
            attention_case(1, 8192, 32, 32, 128, True, "fwd", "cudnn", "bf16")]


VENDOR_CASES = tuple(c.name for c in vendor_cases())
VENDOR_FILTER = "^(" + "|".join(re.escape(n) for n in VENDOR_CASES) + ")$"


def gpu_test_cases() -> list[Case]:
    """What tests/kernels/test_gpu_paths.py measures (`pytest -m gpu`): cuDNN against XLA causal
    attention, forward and forward+backward, and the fp8 matmul. Cases of the default GPU suite,
    so that after the suite their programs come from the persistent compilation cache, and the
    reference run can estimate this stage too."""
    attention = [attention_case(16384 // 4096, 4096, 32, 8, 128, True, p, impl, "bf16")
                 for p in ("fwd", "fwd_bwd") for impl in ("cudnn", "xla")]
    return attention + [matmul_case(4096, 4096, 4096, "fp8")]


def decode_attention_cases(full: bool = False) -> list[Case]:
    """Decode attention as the serving projections price it (clusters.inference): Llama 3 70B's
    GQA at TP 8 (8 query heads over one KV head of 128) over 2K and 32K cached tokens, and
    DeepSeek-V3's absorbed MLA (128 heads over a 512 + 64 latent), one query row and two (one
    MTP draft), each with a bf16 and an fp8 cache; 64 sequences."""
    seqs = (2048, 32768) + ((8192, 131072) if full else ())
    cases = [decode_attention_case("gqa", 64, s, 8, 1, 128) for s in seqs]
    cases.append(decode_attention_case("gqa", 64, 8192, 8, 1, 128, kv_dtype="fp8"))
    cases += [decode_attention_case("mla", 64, 4096, 128, rows=r) for r in (1, 2)]
    cases.append(decode_attention_case("mla", 64, 4096, 128, rows=1, kv_dtype="fp8"))
    return cases


def grouped_gemm_cases(full: bool = False) -> list[Case]:
    """DeepSeek-V3's routed experts at EP 8 (32 experts a GPU; gate+up 7168 -> 2 x 2048, down
    2048 -> 7168) as one grouped GEMM each, at 16 rows an expert (decode), 128 and 512 (prefill
    and training micro-batches)."""
    model = load_model("deepseek-v3")
    h, f = model.hidden_size, model.moe.expert_ffn_hidden_size
    local = model.moe.n_routed_experts // 8
    return [grouped_matmul_case(local, m, n, k, "bf16", label=f"deepseek-v3/{name}/ep8/m{m}")
            for m in ((16, 128, 512) if full else (16, 512)) for name, n, k in (("expert_up", 2 * f, h),
                                                       ("expert_down", h, f))]


def _gpu_cases(suite: str) -> list[Case]:
    if suite == "quick":
        return _cpu_cases("quick")
    # `default` is sized to the staged reference run on a lent GPU (15 minutes of device time,
    # start-up included): `rackbench plan --device-kind 'NVIDIA H200'` estimates it, stage by
    # stage, and tests/harness/test_staging.py holds every stage under its budget.
    full = suite == "full"
    sizes = [1024, 4096, 8192] + ([2048, 16384] if full else [])
    cases = [c for c in _matmul_sweep(sizes, ["bf16", "fp8"]) if c.name not in VENDOR_CASES]
    # fp16 and fp32 price no published row; fp32's 8192^3 takes 22 ms a call on an H200
    cases += _matmul_sweep([4096] + ([1024, 8192] if full else []), ["fp16"])
    cases += _matmul_sweep([1024, 4096] + ([8192] if full else []), ["fp32"])
    cases += _model_gemm_cases([1, 8], [4096] + ([8192] if full else []), "bf16", chunks=full)
    cases += _model_gemm_cases([8], [64], "bf16", models=DECODE_GEMM_MODELS)  # decode-sized
    # fp8 (fp32 accumulation) at a dense model's training shapes and at decode's 16-256 rows
    cases += _model_gemm_cases([8], [4096], "fp8", models=GEMM_MODELS if full else ("llama3-70b",))
    cases += _model_gemm_cases([8], [16, 64, 256] if full else [16, 256], "fp8",
                               models=("llama3-70b",))
    cases += grouped_gemm_cases(full)
    seqs = [1024, 2048, 4096, 8192] + ([16384] if full else [])
    cases += vendor_cases()  # the staged reference run measures them before the rest
    # Decoders train causal: the default suite times causal masks (the full mask, and the plain
    # jnp reference that materialises B·N·T·S scores, only in `full`), cuDNN's forward+backward
    # to 16K tokens, the fused kernel the Blackwell stacks run
    masks = (True, False) if full else (True,)
    cases += _attention_sweep(seqs, 16384, "bf16", ("cudnn",), masks=masks)
    # XLA's attention calibrates the closing-the-loop step (kernels/train_step.py runs it):
    # its forward+backward, and the forward only in `full`
    cases += _attention_sweep(seqs, 16384, "bf16", ("xla",), masks=masks,
                              passes=("fwd", "fwd_bwd") if full else ("fwd_bwd",))
    if not full:  # the GPU tests' XLA forward (gpu_test_cases), from the compilation cache
        cases += _attention_sweep([4096], 16384, "bf16", ("xla",), masks=(True,), passes=("fwd",))
    if not full:
        cases += _attention_sweep([16384], 16384, "bf16", ("cudnn",), passes=("fwd_bwd",),
                                  masks=(True,))
    else:
        cases += _attention_sweep([1024, 4096], 16384, "bf16", ("jnp",))
    cases += decode_attention_cases(full)
    # memory-bound work from 1 MB (a decode step's norms) to 4 GiB: the stream's bytes are
    # read twice and written once (kernels.membw.stream_bytes)
    cases += [stream_case(1 << n) for n in (16, 19, 22, 28, 30)]
    cases += [rmsnorm_case(1024, 8192, "bf16"), rmsnorm_case(16384, 8192, "bf16")]
    gpu_model = TinyLlama(layers=8, hidden=2048, ffn=5632, heads=16, kv_heads=4, vocab=32000, seq_len=2048, batch=8)
    cases += [train_step_case(gpu_model, "bf16")]
    return cases


# Collective sweeps (nccl-tests sizes): (ops, smallest, largest, step). On a CPU the default sweep
# (40 cases over 8 host devices) takes ~20-30 s on 2 cores; on GPUs it goes to 1 GiB.
_COLLECTIVE_SWEEPS = {
    ("quick", "cpu"): (("all_reduce", "all_gather"), 2**10, 2**18, 16),
    ("default", "cpu"): (COLLECTIVE_OPS, 2**10, 2**24, 4),
    ("full", "cpu"): (COLLECTIVE_OPS, 2**10, 2**26, 4),
    ("quick", "gpu"): (("all_reduce", "all_gather"), 2**10, 2**18, 16),
    ("default", "gpu"): (COLLECTIVE_OPS, 2**10, 2**30, 4),
    ("full", "gpu"): (COLLECTIVE_OPS, 2**10, 2**30, 2),
}


def _collective_cases(suite: str, platform: str, device_count: int | None) -> list[Case]:
    """The sweep over every device JAX sees (all processes). With one device, one case per op
    stays in the suite, to be recorded as skipped with the reason."""
    import jax

    ops, smallest, largest, step = _COLLECTIVE_SWEEPS[(suite, "cpu" if platform == "cpu" else "gpu")]
    n = jax.device_count() if device_count is None else device_count
    if n < 2:
        return [collective_case(op, smallest, ranks=n) for op in ops]
    return collective_sweep(ops, smallest, largest, step)


def build_suite(suite: str, platform: str, device_count: int | None = None) -> list[Case]:
    """The suite's cases for `platform` with `device_count` devices (default: what JAX sees;
    another count plans a run for another machine, e.g. one H200 from here)."""
    if suite not in SUITES:
        raise UserError(f"unknown suite {suite!r} (choose from {', '.join(SUITES)})")
    cases = _cpu_cases(suite) if platform == "cpu" else _gpu_cases(suite)
    cases += _collective_cases(suite, platform, device_count)
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:  # a bug in the tables above, not user input
        raise AssertionError(f"duplicate case names: {sorted(dupes)}")
    return cases
