"""Closing the loop: project a result set's own training-step case onto the device that
measured it, calibrated only by the same run's kernel cases, and compare with the measured step.

The train step (kernels/train_step.py) is a small Llama-style decoder trained with optax AdamW;
its case params carry its dimensions. We rebuild that model, a one-chip "local" system whose
peaks and bandwidth are the result set's ceilings (measured in the run on a CPU, the catalog's
on a known GPU: the same numbers the set's fractions of peak divide by), a plan with every
degree 1, and a calibration from the set's matmul, attention and membw cases, then project the
step with clusters.train.train_step. Nothing is fitted to the step's own time.

What clusters.train leaves out for this step, added here from first principles as named parts:
- `activation_dtype_s`: clusters.train counts 2-byte activations (bf16 training); a step
  computed in a wider dtype (fp32 on a CPU) moves `itemsize / 2` times those bytes.
- `embedding_s`: the input embedding is a gather forward and a scatter-add into a zeroed
  vocab x hidden gradient backward (clusters.train counts no embedding traffic).

Where the set measured the step's own parts at the step's shapes (kernels.train_step.part_cases,
in the CPU suites), three parts are priced from those measurements instead:
- `gemm_s`: the GEMMs as the step runs them, one dot per weight (clusters.train prices
  Megatron's fused QKV and gate-up), each forward, input gradient and weight gradient at the
  time its shape and layout took (clusters.train: backward = 2 x forward at the forward's
  efficiency). Without them the calibration reads these sizes off square and 64-token layer
  cases, which on the 2-core CPU run 10-25% below the step's 1,024-token shapes: a set priced
  the step's GEMMs at 405 ms where, within the same hour, they took 334 ms measured alone at
  the step's shapes; the excess hid the two parts below.
- `attention_s`: the step's attention case, once per layer, instead of the calibration's
  reading at the step's FLOPs from cases of another shape (head dim 128 against the step's
  64; XLA computes every score of a causal mask, so time need not follow FLOPs). On the 2-core
  CPU the two agree within 5%.
- `transposed_grads_s` (clusters.train has no such part): XLA:CPU gives a weight-gradient GEMM
  its output-gradient operand transposed. Where that gradient comes out of an elementwise loop
  the transpose is fused into it: the SwiGLU gate's gradient, every layer, whose loop then
  reads its four inputs across rows, 24x slower than the same loop untransposed (9.6 against
  0.40 ms on the 2-core CPU). The loss's logit gradient is padded back to every position (the
  loss drops the last one) and transposed, two passes over a vocab-wide tensor that the model's
  16 bytes per logit do not count. Both are charged at the times their cases measured (the
  untransposed elementwise work inside the first, which `elementwise_s` counts too, is under a
  twentieth of it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from clusters.calibration import Calibration
from clusters.dtypes import bytes_per_element
from harness.studies.calibrate import calibration_from_dataframe
from clusters.catalog import Chip, Fabric, System, load_chip
from clusters.plan import PRECISIONS, Plan
from clusters import flops as F
from clusters.train import Rates, output_layer_s, train_step
from clusters.workloads import Model, model_from_dict
from kernels.tiny_llama import ATTENTION_IMPL, FUSION_GROUP, TinyLlama, step_gemms
from harness.errors import INPUT_ERRORS, UserError
from harness.format import duration
from harness.resultset import ResultSet, to_dataframe

TRAIN_STEP_GROUP = "train_step"
# clusters.train's byte counts for activations assume this many bytes per element
TRAIN_MODEL_ACTIVATION_BYTES = 2
TOLERANCE = 0.25  # issue 4: the projection must land within 25% of the measured step


@dataclass(frozen=True)
class ClosingLoop:
    case: str
    measured_step_time_s: float
    projected_step_time_s: float
    breakdown_s: Mapping[str, float]  # named parts; they sum to projected_step_time_s
    system: System
    plan: Plan
    calibration: str
    notes: tuple[str, ...]

    @property
    def error(self) -> float:
        """Signed fraction: (projected - measured) / measured."""
        return self.projected_step_time_s / self.measured_step_time_s - 1.0

    @property
    def within_tolerance(self) -> bool:
        return abs(self.error) <= TOLERANCE

    def to_extra(self) -> dict:
        """What the training-step case of the result set stores (CaseResult.extra)."""
        return {
            "projected_step_time_s": self.projected_step_time_s,
            "projection_error": self.error,
            "projection_breakdown_s": dict(self.breakdown_s),
            "projection_calibration": self.calibration,
            "projection_system": self.system.description,
            "projection_notes": list(self.notes),
        }


# ------------------------------------------------------------------------- the three inputs

def train_step_case(rs):
    """The result set's training-step case (the first one), or None."""
    return next((c for c in rs.cases if c.group == TRAIN_STEP_GROUP), None)


def model_from_case(params: Mapping, where: str = "train_step case") -> Model:
    """The kernels/train_step.py TinyLlama as a clusters Model: untied LM head, SwiGLU, RMSNorm
    without biases, no position embedding (no rotary work either)."""
    try:
        doc = {
            "name": "tiny-llama", "description": "kernels/train_step.py TinyLlama",
            "source": f"{where} params", "n_layers": params["layers"],
            "hidden_size": params["hidden"], "ffn_hidden_size": params["ffn"],
            "n_heads": params["heads"], "n_kv_heads": params["kv_heads"],
            "head_dim": params["hidden"] // params["heads"], "vocab_size": params["vocab"],
            "activation": "swiglu", "tied_embeddings": False, "position_embedding": "none",
            "linear_bias": False, "seq_len": params["seq_len"],
        }
    except (KeyError, TypeError) as exc:
        raise UserError(f"{where}: params lack the model dimension {exc}") from None
    return model_from_dict(doc, where)


def training_slot(dtype: str) -> str:
    """The plan precision a step computed in `dtype` is projected through. clusters.plan trains
    in bf16/fp16/fp8 only; an fp32 step goes through the bf16 slot of the local chip, whose
    bf16 peak and calibration are then the fp32 ones (see local_system, local_calibration)."""
    return dtype if dtype in PRECISIONS else "bf16"


def local_system(meta: Mapping, dtype: str, where: str = "result set") -> System:
    """One chip of the device that measured the set, as a one-chip system: peaks per dtype and
    memory bandwidth from meta["ceilings"], family as clusters.calibration labels the set's
    entries (the catalog chip's family, else the device kind), memory (the driver's figure, else
    the catalog's, else JAX's) and power from the device or its catalog chip. The slot `training_slot(dtype)` holds the `dtype` peak. It has no
    fabric: a one-chip plan never communicates."""
    dev = meta.get("device") or {}
    ceil = meta.get("ceilings") or {}
    peaks = {d: float(v) for d, v in (ceil.get("peak_flops_per_s") or {}).items()
             if v and math.isfinite(float(v))}
    bw = ceil.get("peak_bw_bytes_per_s")
    if dtype not in peaks:
        raise UserError(f"{where}: no {dtype} FLOP/s ceiling (meta.ceilings.peak_flops_per_s "
                        f"has {', '.join(sorted(peaks)) or 'none'})")
    if not bw:
        raise UserError(f"{where}: no memory-bandwidth ceiling (meta.ceilings."
                        "peak_bw_bytes_per_s): the run's memory-ceiling sweep (a device the catalog does not know) "
                        "did not run or failed; the set's warnings say which")
    kind = str(dev.get("kind") or "unknown device")
    catalog = load_chip(dev["catalog_chip"]) if dev.get("catalog_chip") else None
    local = local_name(meta)
    slot = training_slot(dtype)
    peaks[slot] = peaks[dtype]
    source = f"{where} ceilings ({ceil.get('source', 'source not recorded')})"
    # the card's capacity as the driver reported it, else the catalog's; JAX's memory_bytes is
    # its allocator's pool on a GPU (75% of the card), the host's memory on a CPU
    hbm = dev.get("hbm_bytes") or (catalog.hbm_bytes if catalog else None) or dev.get("memory_bytes") or 1e12
    chip = Chip(
        name=local, vendor=catalog.vendor if catalog else str(dev.get("platform", "")),
        family=local,
        description=f"the device that measured {where}: {kind}",
        peak_flops_per_s=MappingProxyType(peaks), hbm_bytes=float(hbm),
        hbm_bw_bytes_per_s=float(bw),
        power_w=catalog.power_w if catalog else float("nan"),
        scale_up_bw_bytes_per_s=float("nan"), scale_out_bw_bytes_per_s=float("nan"),
        price_usd=None, device_kind_patterns=(), sources=MappingProxyType(
            {"peak_flops_per_s": source, "hbm_bw_bytes_per_s": source}),
        notes=MappingProxyType({} if slot == dtype else {
            "peak_flops_per_s": f"the {slot} slot holds the {dtype} peak (the step's dtype)"}))
    return System(
        name=local, description=f"1 x {kind} ({ceil.get('source', 'ceilings')})",
        chip=chip, chips_per_domain=1, domain_topology="switched", scale_up=_NO_FABRIC,
        scale_out=_NO_FABRIC, power_w=chip.power_w, price_usd=None,
        sources=MappingProxyType({}), notes=MappingProxyType({}))


_NO_FABRIC = Fabric(
    name="none", kind="none", description="a one-chip system has no fabric",
    bw_bytes_per_s_per_chip=float("nan"), latency_s=float("nan"),
    per_hop_latency_s=float("nan"), efficiency=float("nan"), in_network_reduction=False,
    inr_efficiency=None, inr_latency_s=None, sources=MappingProxyType({}),
    notes=MappingProxyType({}))


def local_plan(params: Mapping, dtype: str) -> Plan:
    """Every degree 1; micro-batch = global batch = the case's batch; no recompute; no ZeRO
    (one chip). Attention is charged as a fused kernel at the efficiency the set measured for
    the very implementation the step runs (see local_calibration)."""
    batch = int(params["batch"])
    return Plan(micro_batch=batch, global_batch=batch, seq_len=int(params["seq_len"]),
                recompute="none", zero=0, precision=training_slot(dtype),
                attention_impl="flash", dropout=False, dp_overlap=False)


def local_name(meta: Mapping) -> str:
    """The local chip's name, which is also its family: the closing-the-loop projection is
    priced by the set's own kernels only, so no published entry of the catalog family answers
    (local_calibration)."""
    return f"local:{(meta.get('device') or {}).get('kind') or 'unknown device'}"


def local_calibration(df, name: str, dtype: str, attention_impl: str | None) -> Calibration:
    """The set's own efficiencies and nothing else, as the local chip is projected with them:
    the measured entries re-keyed to the local chip (local_name), attention of the
    implementation the step runs, the step's dtype in the slot it is projected through, and no
    sustained-clock derating (the step is timed in the same short bursts as the kernels). With
    no published entry beside them, a measured curve is held flat outside its sizes."""
    cal = calibration_from_dataframe(df, name, attention_impl=attention_impl)
    local = local_name(df.attrs.get("meta") or {"device": df.attrs.get("device") or {}})
    slot = training_slot(dtype)
    entries = []
    for e in cal.entries:
        if not e.measured or (slot != dtype and e.dtype == slot):
            continue  # published figures, or measured in the slot's own dtype, not the step's
        if e.kernel == "attention" and attention_impl and e.impl != attention_impl:
            continue
        entries.append(replace(e, family=local, dtype=slot if e.dtype == dtype else e.dtype))
    measured = {e.kernel for e in entries if e.kernel != "memory" or e.op == "stream"}
    missing = {"gemm", "attention", "memory"} - measured
    if missing:
        raise UserError(f"{name}: no ok {dtype} {', '.join(sorted(missing))} case to calibrate "
                        "the training step from (run the matmul, attention and membw cases too)")
    return replace(cal, entries=tuple(entries), sustained={}, borrow={}, software_factors={})


# ------------------------------------------------------------------------- the projection

def _extra_parts(model: Model, plan: Plan, rates: Rates, dtype: str,
                 elementwise_s: float) -> dict[str, float]:
    tokens = plan.micro_batch * plan.seq_len
    e = bytes_per_element(dtype)
    # clusters.train's elementwise part = the layers' activation traffic (2-byte elements)
    # plus the cross-entropy over fp32 logits (already in the step's real dtype)
    _, logits_s = output_layer_s(model, rates, tokens, 1)
    layers_s = max(0.0, elementwise_s - logits_s)
    h = model.hidden_size
    # gather: read and write one row per token; backward: zero the vocab x h gradient, then
    # read the incoming row gradient and read + write the accumulated row, per token
    embedding_bytes = 2.0 * tokens * h * e + 4.0 * model.vocab_size * h + 3.0 * tokens * h * e
    return {
        "activation_dtype_s": layers_s * (e / TRAIN_MODEL_ACTIVATION_BYTES - 1.0),
        "embedding_s": rates.mem_s(embedding_bytes),
    }


def _step_dims(params: Mapping) -> TinyLlama:
    return TinyLlama(**{f.name: int(params[f.name]) for f in fields(TinyLlama)})


def _measured_parts(rs, dtype: str) -> dict:
    """The set's ok median times of the cases a step's parts are looked up by: GEMMs by (m, n,
    k, layout), attention by its shape and implementation, fusions by op and shape."""
    out = {}
    for c in rs.cases:
        p = c.params or {}
        if c.status != "ok" or not c.median_s or str(p.get("dtype")) != dtype:
            continue
        if c.group in ("matmul", "matmul_model"):
            key = ("gemm", p.get("m"), p.get("n"), p.get("k"), p.get("layout", "nn"))
        elif c.group == "attention" and p.get("pass") == "fwd_bwd":
            key = ("attention", p.get("impl"), bool(p.get("causal")), p.get("b"), p.get("t"),
                   p.get("s"), p.get("n_heads"), p.get("n_kv_heads"), p.get("head_dim"))
        elif c.group == FUSION_GROUP:
            key = ("fusion", p.get("op")) + tuple(sorted((k, v) for k, v in p.items()
                                                         if k not in ("op", "dtype")))
        else:
            continue
        out.setdefault(key, float(c.median_s))
    return out


def measured_step_parts(rs, params: Mapping, dtype: str, impl: str | None, rates: Rates,
                        model_parts: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """`gemm_s`, `attention_s` and `transposed_grads_s` of the step from the set's cases at the
    step's own shapes (module docstring), with a note on each; a GEMM shape the set did not
    measure is priced by the calibration (`rates`), attention the set did not measure at the
    step's shape keeps clusters.train's price (`model_parts`), and a transposed loop it did not
    measure is left out (said in the note)."""
    m = _step_dims(params)
    got = _measured_parts(rs, dtype)
    gemm, priced, missing = 0.0, 0, 0
    for g in step_gemms(m):
        for _, (mm, nn, kk), layout in g.passes():
            t = got.get(("gemm", mm, nn, kk, layout))
            if t is None:
                missing += 1
                t = rates.gemm_s(F.Gemm(g.name, mm, nn, kk))
            else:
                priced += 1
            gemm += g.count * t
    notes = [f"gemm_s: the step's {priced + missing} GEMM shapes and layouts (one dot per weight), "
             + (f"{priced} at this set's time for that shape and layout" if priced else "")
             + (", " if priced and missing else "")
             + (f"{missing} by the calibration (not measured)" if missing else "")]
    attn = got.get(("attention", impl, True, m.batch, m.seq_len, m.seq_len, m.heads,
                    m.kv_heads, m.head_dim))
    if attn is None:
        attn_s = model_parts["attention_s"]
        notes.append("attention_s: the calibration's (the set has no attention case at the step's shape)")
    else:
        attn_s = m.layers * attn
        notes.append(f"attention_s: the set's {impl} causal forward+backward at the step's shape, "
                     f"x{m.layers} layers")
    t = m.batch * m.seq_len
    swiglu = got.get(("fusion", "swiglu_gate_grad_t", ("ffn", m.ffn), ("tokens", t)))
    logits = got.get(("fusion", "logits_grad_pad_t", ("batch", m.batch), ("seq_len", m.seq_len),
                      ("vocab", m.vocab)))
    transposed = (m.layers * swiglu if swiglu else 0.0) + (logits or 0.0)
    lacking = [n for n, v in (("SwiGLU gate gradient", swiglu), ("padded logit gradient", logits))
               if v is None]
    notes.append("transposed_grads_s: " + ("; ".join(
        ([f"SwiGLU gate gradient x{m.layers} layers"] if swiglu else [])
        + (["padded logit gradient"] if logits else [])) or "none")
        + " at this set's times" + (f" ({', '.join(lacking)} not measured: left out)" if lacking else ""))
    return {"gemm_s": gemm, "attention_s": attn_s, "transposed_grads_s": transposed}, notes


def close_loop(rs, case=None) -> ClosingLoop:
    """Project the set's training-step case (or `case`) on the device that measured it."""
    case = case or train_step_case(rs)
    where = Path(rs.path).name if rs.path else "result set"
    if case is None:
        raise UserError(f"{where}: no {TRAIN_STEP_GROUP} case")
    if case.status != "ok" or not case.median_s:
        raise UserError(f"{where}: {case.name} is {case.status} ({case.reason or 'no time'})")
    params = case.params
    dtype = str(params.get("dtype", "bf16"))
    impl = ATTENTION_IMPL.get(str(params.get("attention", "")))
    model = model_from_case(params, f"{where}: {case.name}")
    system = local_system(rs.meta, dtype, where)
    plan = local_plan(params, dtype)
    cal = local_calibration(to_dataframe(rs), where, dtype, impl)
    result = train_step(model, system, plan, cal)
    rates = Rates(system.chip, cal, plan.precision)
    parts = {k: v for k, v in result.breakdown_s.items()}
    parts.update(_extra_parts(model, plan, rates, dtype, parts["elementwise_s"]))
    measured, part_notes = measured_step_parts(rs, params, dtype, impl, rates, parts)
    parts.update(measured)
    notes = [f"calibration: {where} (its own {dtype} matmul, {impl or 'any'} attention, membw "
             "cases)", f"system: {system.description}"] + part_notes
    if training_slot(dtype) != dtype:
        notes.append(f"{dtype} step projected through the {training_slot(dtype)} plan slot "
                     f"(clusters.plan trains in {'/'.join(PRECISIONS)}): peak and efficiencies "
                     f"are the {dtype} ones; activation bytes scaled x{bytes_per_element(dtype) / 2:g}")
    return ClosingLoop(case=case.name, measured_step_time_s=float(case.median_s),
                       projected_step_time_s=sum(parts.values()), breakdown_s=parts,
                       system=system, plan=plan, calibration=where, notes=tuple(notes))


# ------------------------------------------------------------------------- stored in the set

EXTRA_KEYS = ("projected_step_time_s", "projection_error", "projection_breakdown_s")


def add_projections(rs: ResultSet) -> None:
    """Project the set's training-step case from the set's own kernel cases and store
    `projected_step_time_s`, `projection_error` (signed fraction) and `projection_breakdown_s`
    in its extra. Without an ok training-step case, or when the set lacks what the projection
    needs, the case (if any) gets `projection_skipped` with the reason and nothing else."""
    case = train_step_case(rs)
    if case is None:
        return
    for key in EXTRA_KEYS + ("projection_skipped",):
        case.extra.pop(key, None)
    if case.status != "ok":
        case.extra["projection_skipped"] = f"training step {case.status}: {case.reason}"
        return
    try:
        loop = close_loop(rs, case)
    except INPUT_ERRORS as exc:
        case.extra["projection_skipped"] = str(exc)
        return
    case.extra.update(loop.to_extra())


def closing_loop_line(rs: ResultSet) -> str | None:
    """One line for `rackbench show`: measured vs projected step and the error."""
    case = train_step_case(rs)
    if case is None:
        return None
    if "projection_skipped" in case.extra:
        return f"closing the loop ({case.name}): not projected: {case.extra['projection_skipped']}"
    projected, err = case.extra.get("projected_step_time_s"), case.extra.get("projection_error")
    if projected is None or err is None or not case.median_s:
        return None
    verdict = "within" if abs(err) <= TOLERANCE else "OUTSIDE"
    return (f"closing the loop ({case.name}): measured {duration(case.median_s)}, projected "
            f"{duration(projected)} from this set's kernels, error {err:+.1%} ({verdict} "
            f"{TOLERANCE:.0%})")
