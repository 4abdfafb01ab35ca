"""One projection, as `rackbench project` asks for it: a model on N chips of a system, in one mode
(train, prefill, decode), with an optional fixed plan, as a JSON-ready dict. The CLI and every
study that must reproduce the CLI (validation) call these functions with keyword arguments."""
from __future__ import annotations

import math

from clusters import inference
from clusters.calibration import Calibration
from clusters.catalog import System
from clusters.errors import ModelInputError
from clusters.plan import Plan, validate_plan
from clusters.search import search
from clusters.train import train_step
from clusters.workloads import Model

PLAN_DEGREES = ("tp", "pp", "vpp", "dp", "ep", "cp", "micro_batch", "recompute", "zero")
TRAIN_TOKENS_PER_STEP = 4e6  # the default global batch: about this many tokens a step
DEFAULT_TRAIN_TOKENS = 15e12  # time-to-train budget (Llama 3's pre-training corpus)
# The largest cluster a projection accepts: above any announced one, and small enough that the
# plan search (which enumerates the divisors of the chip count) ends in about a second.
MAX_CHIPS = 1 << 20


def check_chips(chips) -> None:
    """A chip count the model can project, checked before any work (1e9 would hang the search)."""
    if not isinstance(chips, int) or isinstance(chips, bool) or not 1 <= chips <= MAX_CHIPS:
        raise ModelInputError(f"chips must be an integer from 1 to {MAX_CHIPS:,}, got {chips!r}")


def default_global_batch(seq_len: int) -> int:
    """About TRAIN_TOKENS_PER_STEP tokens per step in whole sequences, a power of two."""
    return max(1, 2 ** round(math.log2(TRAIN_TOKENS_PER_STEP / seq_len)))


def project_train(model: Model, system: System, chips: int, calibration: Calibration, *,
                  precision: str = "bf16", global_batch: int | None = None,
                  seq_len: int | None = None, degrees: dict | None = None,
                  software: dict | None = None, top: int = 3,
                  train_tokens: float = DEFAULT_TRAIN_TOKENS) -> dict:
    """Training: with `degrees` (any of PLAN_DEGREES) that plan, dp filling the chips when not
    given; without, the best `top` plans of the search (alternatives listed)."""
    check_chips(chips)
    if precision == "int8":
        raise ModelInputError("precision int8 is for inference; train with bf16 or fp8")
    seq = seq_len or model.seq_len
    gb = global_batch or default_global_batch(seq)
    software = dict(software or {})
    given = {k: v for k, v in (degrees or {}).items() if v is not None}
    unknown = set(given) - set(PLAN_DEGREES)
    if unknown:
        raise ModelInputError(f"unknown plan degree {sorted(unknown)[0]!r} "
                              f"(known: {', '.join(PLAN_DEGREES)})")
    if given:
        tp, pp, cp = given.get("tp", 1), given.get("pp", 1), given.get("cp", 1)
        if "dp" not in given:
            if chips % (tp * pp * cp):
                raise ModelInputError(f"chips {chips} is not divisible by tp*pp*cp = "
                                      f"{tp * pp * cp}")
            given["dp"] = chips // (tp * pp * cp)
        plan = Plan(global_batch=gb, seq_len=seq, precision=precision, **given, **software)
        validate_plan(model, plan, chips)
        results, evaluated = [train_step(model, system, plan, calibration)], None
    else:
        results, evaluated = search(model, system, chips, gb, seq, precision, calibration,
                                    top=top, software=software)
    best = results[0]
    doc = best.to_dict()
    doc["time_to_train_s"] = best.time_to_train_s(train_tokens)
    doc["train_tokens"] = train_tokens
    if evaluated is not None:
        doc["plans_evaluated"] = evaluated
        doc["alternatives"] = [{"plan": r.to_dict()["plan"], "step_time_s": r.step_time_s,
                                "mfu": r.mfu} for r in results[1:]]
    doc["calibration"] = calibration.name
    return doc


def project_serve(model: Model, system: System, chips: int, calibration: Calibration, *,
                  mode: str, precision: str = "bf16", tp: int | None = None,
                  ep: int | None = None, batch_per_chip: int | None = None,
                  seq_len: int | None = None, context: int | None = None,
                  overlap: bool = False, tpot_s: float | None = None,
                  ttft_s: float | None = None) -> dict:
    """Prefill (`batch_per_chip` prompts of seq_len tokens per chip) or decode (a fixed batch,
    or the largest meeting `tpot_s`, each sequence caching `context` tokens). EP defaults to
    every chip up to the routed-expert count; a multi-die chip runs one attention-DP rank per
    die when tp is 1."""
    check_chips(chips)
    if mode not in ("prefill", "decode"):
        raise ModelInputError(f"serving mode must be prefill or decode, got {mode!r}")
    seq = seq_len or model.seq_len
    tp = tp or 1
    ep = ep or (min(chips, model.moe.n_routed_experts) if model.moe is not None else 1)
    kv = 1.0 if precision in ("fp8", "int8") else 2.0
    ranks = inference.devices_per_chip(system.chip) if tp == 1 else 1
    if mode == "prefill":
        plan = inference.ServePlan(chips=chips, tp=tp, ep=ep, batch_per_chip=batch_per_chip or 1,
                                   context=seq, precision=precision, kv_bytes=kv,
                                   overlap=overlap, ranks_per_chip=ranks)
        r = inference.prefill(model, system, plan, calibration)
        if ttft_s is not None and r.step_time_s > ttft_s:
            raise ModelInputError(f"TTFT {r.step_time_s * 1e3:.1f} ms exceeds the target "
                                  f"{ttft_s * 1e3:g} ms")
    else:
        plan = inference.ServePlan(chips=chips, tp=tp, ep=ep, batch_per_chip=batch_per_chip or 1,
                                   context=context or seq, precision=precision, kv_bytes=kv,
                                   overlap=overlap, ranks_per_chip=ranks)
        r = (inference.best_batch_for_tpot(model, system, plan, tpot_s, calibration)
             if tpot_s is not None else inference.decode(model, system, plan, calibration))
    doc = r.to_dict()
    doc["calibration"] = calibration.name
    return doc
