"""One projection, as `rackbench project` asks for it: a model on N chips of a system, in one mode
(train, prefill, decode), with an optional fixed plan, as a JSON-ready dict. The CLI and every
study that must reproduce the CLI (validation) call these functions with keyword arguments."""
from __future__ import annotations

import math

import numpy as np

from clusters import inference
from clusters import uncertainty as U
from clusters.calibration import Calibration
from clusters.catalog import System
from clusters.dtypes import bytes_per_element
from clusters.errors import ModelInputError
from clusters.plan import Plan, to_table, validate_plan
from clusters.search import search
from clusters.train import evaluate, train_step
from clusters.workloads import Model

PLAN_DEGREES = ("tp", "pp", "vpp", "dp", "ep", "cp", "micro_batch", "recompute", "zero")
TRAIN_TOKENS_PER_STEP = 4e6  # the default global batch: about this many tokens a step
# metrics that get <name>_p10 and <name>_p90 (clusters.uncertainty.add_band_fields)
TRAIN_RATES = ("tokens_per_s", "tokens_per_s_per_chip", "model_flops_per_s_per_chip",
               "causal_model_flops_per_s_per_chip", "hardware_flops_per_s_per_chip", "mfu",
               "mfu_palm", "hfu")
TRAIN_TIMES = ("step_time_s", "time_to_train_s")
SERVE_RATES = ("tokens_per_s_per_chip", "output_tokens_per_s_per_chip",
               "input_tokens_per_s_per_chip")
SERVE_TIMES = ("step_time_s", "tpot_s", "ttft_s")
ENERGIES = ("joules_per_token",)
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


def train_band(model: Model, system: System, plan: Plan, calibration: Calibration) -> U.Band:
    """The band of one training plan: its input samples (and each input alone at its
    samples' 10th and 90th percentiles) as rows of one plan table through the cost model."""
    inputs = U.inputs_for(calibration, system, plan.precision, "train", ranks=plan.chips)
    values = U.sample_matrix(inputs)
    rows = np.vstack([np.ones((1, len(inputs))), values, U.one_at_a_time(inputs, values)])
    eff = U.class_multipliers(inputs, rows)
    step = evaluate(model, system, to_table([plan] * len(rows)), calibration,
                    eff_scale=eff).step_time_s
    ratio = step[0] / step[1:]
    n = len(values)
    swings = {inp.name: abs(math.log(ratio[n + 2 * j + 1] / ratio[n + 2 * j]))
              for j, inp in enumerate(inputs)}
    return U.Band.from_samples(ratio[:n], swings, inputs, U.model_form_for("train"),
                               eff["power"][1:n + 1])


def serve_band(model: Model, system: System, result, calibration: Calibration) -> U.Band:
    """The band of one serving result's plan (its batch fixed): the scalar serving model run
    on perturbed copies of the calibration and system, one per sample."""
    plan = result.plan
    fn = inference.decode if result.mode == "decode" else inference.prefill
    inputs = U.inputs_for(calibration, system, plan.precision, result.mode,
                          plan.attention_precision, ranks=inference.instance_devices(system, plan))
    values = U.sample_matrix(inputs)
    rows = np.vstack([values, U.one_at_a_time(inputs, values)])
    eff = U.class_multipliers(inputs, rows)
    central = result.tokens_per_s_per_chip
    ratio = np.empty(len(rows))
    for i in range(len(rows)):
        cal, sys_ = U.perturbed(calibration, system, {k: float(v[i]) for k, v in eff.items()})
        ratio[i] = fn(model, sys_, plan, cal).tokens_per_s_per_chip / central
    n = len(values)
    swings = {inp.name: abs(math.log(ratio[n + 2 * j + 1] / ratio[n + 2 * j]))
              for j, inp in enumerate(inputs)}
    return U.Band.from_samples(ratio[:n], swings, inputs, U.model_form_for(result.mode),
                               eff["power"][:n])


def project_train(model: Model, system: System, chips: int, calibration: Calibration, *,
                  precision: str = "bf16", global_batch: int | None = None,
                  seq_len: int | None = None, degrees: dict | None = None,
                  software: dict | None = None, top: int = 3,
                  train_tokens: float = DEFAULT_TRAIN_TOKENS,
                  calibration_variant: str | None = None, band: bool = True) -> dict:
    """Training: with `degrees` (any of PLAN_DEGREES) that plan, dp filling the chips when not
    given; without, the best `top` plans of the search (alternatives listed). On a chip of
    several devices (the 910C's two dies) the degrees count ranks, one per device."""
    check_chips(chips)
    if precision == "int8":
        raise ModelInputError("precision int8 is for inference; train with bf16, fp16 or fp8")
    if calibration_variant:
        calibration = calibration.variant(calibration_variant)
    seq = seq_len or model.seq_len
    gb = global_batch or default_global_batch(seq)
    software = dict(software or {})
    given = {k: v for k, v in (degrees or {}).items() if v is not None}
    unknown = set(given) - set(PLAN_DEGREES)
    if unknown:
        raise ModelInputError(f"unknown plan degree {sorted(unknown)[0]!r} "
                              f"(known: {', '.join(PLAN_DEGREES)})")
    if given:
        ranks = chips * system.chip.devices
        tp, pp, cp = given.get("tp", 1), given.get("pp", 1), given.get("cp", 1)
        if "dp" not in given:
            if ranks % (tp * pp * cp):
                raise ModelInputError(f"{ranks} ranks ({chips} chips) are not divisible by "
                                      f"tp*pp*cp = {tp * pp * cp}")
            given["dp"] = ranks // (tp * pp * cp)
        plan = Plan(global_batch=gb, seq_len=seq, precision=precision, **given, **software)
        validate_plan(model, plan, ranks)
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
                                "tokens_per_s_per_chip": r.tokens_per_s_per_chip, "mfu": r.mfu,
                                "memory_bytes_per_chip": r.memory.total_bytes}
                               for r in results[1:]]
    doc["calibration"] = calibration.name
    recorder = calibration.recording()  # what priced the plan shown, entry by entry
    train_step(model, system, best.plan, recorder)
    doc["priced_by"] = recorder.priced_by()
    if band:  # the band belongs to the plan shown (the search's winner)
        U.add_band_fields(doc, train_band(model, system, best.plan, calibration), TRAIN_RATES,
                          TRAIN_TIMES, ENERGIES)
    return doc


def project_serve(model: Model, system: System, chips: int, calibration: Calibration, *,
                  mode: str, precision: str = "bf16", tp: int | None = None,
                  ep: int | None = None, batch_per_chip: float | None = None,
                  fill_kv: bool = False, seq_len: int | None = None,
                  context: int | None = None, overlap: bool | None = False,
                  attention_precision: str = "bf16",
                  tpot_s: float | None = None, ttft_s: float | None = None,
                  mtp_tokens: int = 0, mtp_acceptance: float = 0.0,
                  ranks_per_chip: int | None = None, kv_precision: str | None = None,
                  input_len: int = 0, output_len: int = 0,
                  prefill_aligned: bool = False, band: bool = True) -> dict:
    """One serving instance of `chips` chips. Prefill: `batch_per_chip` prompts of seq_len
    tokens per chip. Decode: each sequence caches `context` tokens; the batch is fixed
    (`batch_per_chip`, fractional when a TP group serves fewer sequences than it has chips),
    the largest the KV cache holds (`fill_kv`), or the largest meeting `tpot_s`. EP defaults
    to every chip up to the routed-expert count; with tp 1 a multi-die chip runs one
    attention-DP rank per die unless `ranks_per_chip` says otherwise. The KV cache is in the
    weights' format unless `kv_precision` names another. With input_len and output_len the
    instance also prefills new prompts in flight (aggregated serving). `overlap` None takes
    whichever of two overlapped micro-batches or one batch is faster."""
    check_chips(chips)
    if mode not in ("prefill", "decode"):
        raise ModelInputError(f"serving mode must be prefill or decode, got {mode!r}")
    seq = seq_len or model.seq_len
    tp = tp or 1
    ep = ep or (min(chips, model.moe.n_routed_experts) if model.moe is not None else 1)
    kv = float(bytes_per_element(kv_precision or precision))
    ranks = ranks_per_chip or (inference.devices_per_chip(system.chip) if tp == 1 else 1)
    common = dict(chips=chips, tp=tp, ep=ep, precision=precision, kv_bytes=kv, overlap=overlap,
                  attention_precision=attention_precision,
                  ranks_per_chip=ranks, mtp_tokens=mtp_tokens, mtp_acceptance=mtp_acceptance)
    if mode == "prefill":
        plan = inference.ServePlan(**common, batch_per_chip=batch_per_chip or 1, context=seq)
        r = inference.prefill(model, system, plan, calibration)
        if ttft_s is not None and r.step_time_s > ttft_s:
            raise ModelInputError(f"TTFT {r.step_time_s * 1e3:.1f} ms exceeds the target "
                                  f"{ttft_s * 1e3:g} ms")
    else:
        plan = inference.ServePlan(**common, batch_per_chip=batch_per_chip or 1,
                                   context=context or seq, input_len=input_len,
                                   output_len=output_len, prefill_aligned=prefill_aligned)
        if tpot_s is not None:
            r = inference.best_batch_for_tpot(model, system, plan, tpot_s, calibration)
        elif fill_kv:
            r = inference.decode(model, system, inference.fill_kv_cache(model, system, plan),
                                 calibration)
        else:
            r = inference.decode(model, system, plan, calibration)
    doc = r.to_dict()
    doc["calibration"] = calibration.name
    recorder = calibration.recording()  # what priced the setup shown, entry by entry
    (inference.decode if mode == "decode" else inference.prefill)(model, system, r.plan, recorder)
    doc["priced_by"] = recorder.priced_by()
    if band:
        U.add_band_fields(doc, serve_band(model, system, r, calibration), SERVE_RATES,
                          SERVE_TIMES, ENERGIES)
    return doc
