"""Head to head: CloudMatrix 384 against GB200 NVL72 (one system each, and at CloudMatrix's chip
count, power and price) and against 384-chip clusters of H100, H800 and H20, on Llama 3 405B
training, DeepSeek-V3 training and DeepSeek-R1 serving; and the Ascend software efficiency at
which CloudMatrix would match each rival (the break-even).

Every contender gets its own best plan: training plans from clusters.search, serving layouts
from a small search over instance size and TP (below). Rules, stated once:
- Training: bf16 on every system (the 910C has no fp8; like for like), the model's sequence
  length, a global batch of about 4M tokens (as `rackbench project`), the same for all.
- Serving DeepSeek-R1: 8-bit weights and KV cache, fp8 where the chip has it (NVIDIA), int8
  on the 910C (CloudMatrix-Infer serves INT8, arXiv 2506.12708); two overlapped micro-batches
  where they are faster than one batch, and one MTP draft (acceptance MTP_ACCEPTANCE) where it
  raises throughput under the TPOT target, each named in the plan column; a
  serving instance of `inst` chips spreads the routed experts over all of them (EP = inst,
  at most the expert count) and runs attention with TP `tp` (data parallel across TP groups);
  the cluster runs chips/inst identical instances. Decode: the largest batch whose step meets
  the TPOT target, KV cache of CONTEXT tokens per sequence. Prefill: one PROMPT-token prompt
  per chip at a time.
- Power is whole-system (pro rata of the systems a chip count occupies), as is price; a
  system without a price in the catalog gets no per-$ figure.
- The break-even bisects the Ascend family's compute software factor
  (clusters.calibration.with_software_factor) for CloudMatrix's throughput to equal the
  rival's. Every Ascend kernel moves with it: the memory factor keeps its ratio to the compute
  factor, and efficiencies the calibration measured on Ascend itself (int8 GEMM, memory in the
  default file) scale by factor / the calibration's compute factor, so at that factor the
  projection is the calibration's own. 1.0 means the borrowed NVIDIA compute efficiencies
  unchanged ("CUDA parity"); the search goes up to "perfect", where CloudMatrix's best kernel
  reaches 100% of peak. Communication (HCCL) efficiency is not part of the factor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from clusters.calibration import Calibration, default_calibration
from clusters.catalog import System, device_view, load_system
from clusters.inference import ServePlan, best_batch_for_tpot, devices_per_chip, prefill
from clusters import uncertainty as U
from clusters.projection import (TRAIN_TOKENS_PER_STEP, default_global_batch, serve_band,
                                 train_band)
from clusters.search import enumerate_plans, practice, search
from clusters.train import evaluate
from clusters.workloads import Model, load_model
from clusters.errors import ModelInputError

REFERENCE = "cloudmatrix-384"
# (system, basis): the GB200 NVL72 four ways, the HGX clusters at CloudMatrix's chip count
RIVALS = (("gb200-nvl72", "per system"), ("gb200-nvl72", "equal chips"),
          ("gb200-nvl72", "equal power"), ("gb200-nvl72", "equal price"),
          ("hgx-h100", "same chips"), ("hgx-h800", "same chips"), ("hgx-h20", "same chips"))
# Chip counts scaled to equal power or price are rounded to this many (an HGX board, two
# GB200 compute trays), so plans have divisors to work with.
GRANULARITY = 8
CONTEXT = 4096  # decode: tokens in each sequence's KV cache
PROMPT = 4096  # prefill: prompt length
# prefill: prompts per chip in one forward, 16,384 tokens as the published large-EP prefill
# setups run (SGLang's 96-H100 deployment, lmsys.org 2025-05-05: 16,384 tokens per device;
# CloudMatrix-Infer, arXiv 2506.12708: 16K tokens per NPU), so the two-batch overlap every
# such stack uses has prompts to split
PROMPTS_PER_CHIP = 4
DEFAULT_TPOT_S = 0.050
# Decode may verify one multi-token-prediction draft per step where the model has an MTP module
# and it raises throughput under the TPOT target: the same acceptance for every contender, the
# DeepSeek-V3 report's "85%-90%" for the second token (arXiv 2412.19437 sec. 5.4.3), low end.
MTP_ACCEPTANCE = 0.85
SERVE_TPS = (1, 4, 8)
BREAK_EVEN_TOL = 0.005  # bisection stops when the factor is known to this
SERVE_CANDIDATES = 3  # serving layouts the break-even curve re-evaluates (the leaders)


@dataclass(frozen=True)
class Workload:
    name: str  # what --workload accepts
    model: str
    modes: tuple[str, ...]  # "train", or the serving phases "decode", "prefill"
    label: str


WORKLOADS = {
    "llama3-405b": Workload("llama3-405b", "llama3-405b", ("train",), "Llama 3 405B training"),
    "deepseek-v3": Workload("deepseek-v3", "deepseek-v3", ("train",), "DeepSeek-V3 training"),
    "deepseek-r1": Workload("deepseek-r1", "deepseek-r1", ("decode", "prefill"),
                            "DeepSeek-R1 serving"),
}


@dataclass(frozen=True)
class Contender:
    system: System
    chips: int
    basis: str

    @property
    def label(self) -> str:
        return f"{self.system.name} x{self.chips}" + (
            "" if self.basis == "reference" else f" ({self.basis})")

    @property
    def n_systems(self) -> float:
        return self.chips / self.system.chips_per_domain

    @property
    def power_w(self) -> float:
        return self.n_systems * self.system.power_w

    @property
    def price_usd(self) -> float | None:
        p = self.system.price_usd
        return None if p is None else self.n_systems * p


def scaled_chips(reference: System, rival: System, basis: str,
                 granularity: int = GRANULARITY) -> int:
    """Chips of `rival` that match one `reference` system on `basis`."""
    per_chip = {"equal power": ("power_w", "power"), "equal price": ("price_usd", "price")}
    if basis in ("reference", "equal chips", "same chips"):
        return reference.chips_per_domain
    if basis == "per system":
        return rival.chips_per_domain
    key, what = per_chip[basis]
    ref, riv = getattr(reference, key), getattr(rival, key)
    if ref is None or riv is None:
        raise ModelInputError(f"{basis}: {reference.name if ref is None else rival.name} has no "
                        f"{what} in the catalog")
    target = ref / (riv / rival.chips_per_domain)
    return max(granularity, granularity * round(target / granularity))


def contenders(reference: str = REFERENCE, rivals=RIVALS) -> list[Contender]:
    ref = load_system(reference)
    out = [Contender(ref, ref.chips_per_domain, "reference")]
    systems = {}
    for name, basis in rivals:
        s = systems.setdefault(name, load_system(name))
        out.append(Contender(s, scaled_chips(ref, s, basis), basis))
    return out


# ------------------------------------------------------------------------- one projection

@dataclass(frozen=True)
class Row:
    workload: str
    mode: str
    contender: Contender
    feasible: bool
    reason: str | None = None
    step_time_s: float = math.nan  # train: step; decode: TPOT; prefill: TTFT
    tokens_per_s: float = 0.0  # the whole contender (all its chips)
    mfu: float | None = None
    plan: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    band: U.Band | None = None  # of the row's plan (clusters.uncertainty)

    @property
    def tokens_per_s_band(self) -> tuple[float, float] | None:
        return None if self.band is None or not self.feasible else self.band.rate(self.tokens_per_s)

    @property
    def tokens_per_s_per_chip(self) -> float:
        return self.tokens_per_s / self.contender.chips

    @property
    def tokens_per_s_per_system(self) -> float:
        return self.tokens_per_s_per_chip * self.contender.system.chips_per_domain

    @property
    def tokens_per_s_per_kw(self) -> float:
        return self.tokens_per_s / (self.contender.power_w / 1e3)

    @property
    def tokens_per_s_per_million_usd(self) -> float | None:
        price = self.contender.price_usd
        return None if price is None else self.tokens_per_s / (price / 1e6)

    @property
    def joules_per_token(self) -> float:
        return self.contender.power_w / self.tokens_per_s if self.tokens_per_s else math.nan

    def to_dict(self) -> dict:
        c = self.contender
        d = {"workload": self.workload, "mode": self.mode, "system": c.system.name,
             "basis": c.basis, "chips": c.chips, "n_systems": c.n_systems,
             "power_w": c.power_w, "capex_usd": c.price_usd, "feasible": self.feasible,
             "infeasible_reason": self.reason, "plan": self.plan}
        if self.feasible:
            band = self.tokens_per_s_band
            if band is not None:
                d["tokens_per_s_p10"], d["tokens_per_s_p90"] = band
                d["sensitivity"] = [{"input": n, "swing": math.expm1(w)}
                                    for n, w in self.band.top()]
            d.update({
                "step_time_s": self.step_time_s, "tokens_per_s": self.tokens_per_s,
                "tokens_per_s_per_chip": self.tokens_per_s_per_chip,
                "tokens_per_s_per_system": self.tokens_per_s_per_system,
                "tokens_per_s_per_kw": self.tokens_per_s_per_kw,
                "tokens_per_s_per_million_usd": self.tokens_per_s_per_million_usd,
                "mfu": self.mfu, "joules_per_token": self.joules_per_token})
            if self.mode == "decode":
                d["tpot_s"] = self.step_time_s
            elif self.mode == "prefill":
                d["ttft_s"] = self.step_time_s
        return d


def _train_plan_text(p) -> str:
    """Degrees (ranks), then the software choices in force: recompute, ZeRO stage and the
    communication overlaps."""
    overlaps = [name for name, on in (("tp-overlap", p.tp_comm_overlap and p.tp > 1),
                                      ("ep-overlap", p.ep_overlap and p.ep > 1)) if on]
    return (f"tp{p.tp} pp{p.pp} dp{p.dp} cp{p.cp} ep{p.ep}" + (f" vpp{p.vpp}" if p.vpp > 1 else "")
            + f" mb{p.micro_batch} rc:{p.recompute} zero{p.zero}"
            + "".join(f" +{o}" for o in overlaps))


def project_train(model: Model, c: Contender, cal: Calibration, workload: str,
                  bands: bool = True) -> Row:
    seq = model.seq_len
    try:
        (best,), _ = search(model, c.system, c.chips, default_global_batch(seq), seq, "bf16", cal, top=1)
    except ModelInputError as exc:
        return Row(workload, "train", c, False, reason=str(exc))
    return Row(workload, "train", c, True, step_time_s=best.step_time_s,
               tokens_per_s=best.tokens_per_s, mfu=best.mfu, plan=_train_plan_text(best.plan),
               band=train_band(model, c.system, best.plan, cal) if bands else None)


def serve_precision(system: System) -> str:
    peaks = system.chip.peak_flops_per_s
    return "fp8" if "fp8" in peaks else ("int8" if "int8" in peaks else "bf16")


def serve_layouts(model: Model, c: Contender) -> list[tuple[int, int]]:
    """(instance chips, tp) candidates: instances of at least one scale-up node's worth of
    chips (8) dividing the contender's chips, with at most one expert per chip (EP = inst),
    and TP within the scale-up domain."""
    experts = model.moe.n_routed_experts if model.moe else c.chips
    sizes = [n for n in range(8, min(c.chips, experts) + 1) if c.chips % n == 0]
    # log-spaced subset: serving throughput varies slowly with instance size
    picked = sorted({sizes[round(i)] for i in np.linspace(0, len(sizes) - 1, min(5, len(sizes)))}) \
        if sizes else []
    return [(n, tp) for n in picked for tp in SERVE_TPS
            if n % tp == 0 and tp <= c.system.chips_per_domain and model.n_heads % tp == 0]


def serve_candidates(model: Model, c: Contender, mode: str, layouts=None) -> list[tuple]:
    """(instance chips, tp, MTP drafts) to try: `layouts` as given when they name the drafts,
    else each layout (default serve_layouts) with and without one draft (decode of a model
    with an MTP module)."""
    drafts = (0, 1) if mode == "decode" and model.mtp_modules else (0,)
    out = []
    for layout in layouts or serve_layouts(model, c):
        out += [tuple(layout)] if len(layout) == 3 else [(*layout, d) for d in drafts]
    return out


def serve_ranking(model: Model, c: Contender, cal: Calibration, mode: str, tpot_s: float,
                  top: int) -> list[tuple]:
    """The `top` serving candidates by throughput under `cal` (for the break-even curve)."""
    scored = []
    for cand in serve_candidates(model, c, mode):
        row = project_serve(model, c, cal, "", mode, tpot_s, [cand], bands=False)
        scored.append((row.tokens_per_s if row.feasible else 0.0, cand))
    scored.sort(key=lambda x: -x[0])
    return [cand for t, cand in scored[:top] if t > 0] or [cand for _, cand in scored[:top]]


def project_serve(model: Model, c: Contender, cal: Calibration, workload: str, mode: str,
                  tpot_s: float, layouts=None, bands: bool = True) -> Row:
    prec = serve_precision(c.system)
    kv = 2.0 if prec == "bf16" else 1.0
    best, reasons = None, []
    for inst, tp, mtp in serve_candidates(model, c, mode, layouts):
        ep = inst if model.moe else 1
        # with tp 1 every device of a multi-die chip is its own attention-DP rank
        ranks = devices_per_chip(c.system.chip) if tp == 1 else 1
        plan = ServePlan(chips=inst, tp=tp, ep=ep, context=CONTEXT if mode == "decode" else PROMPT,
                         batch_per_chip=1 if mode == "decode" else PROMPTS_PER_CHIP,
                         precision=prec, kv_bytes=kv, overlap=None, ranks_per_chip=ranks,
                         mtp_tokens=mtp, mtp_acceptance=MTP_ACCEPTANCE if mtp else 0.0)
        try:
            if mode == "decode":
                r = best_batch_for_tpot(model, c.system, plan, tpot_s, cal)
            else:
                r = prefill(model, c.system, plan, cal)
        except ModelInputError as exc:
            reasons.append(str(exc))
            continue
        if not r.feasible:
            reasons.append(f"inst{inst} tp{tp}: does not fit")
            continue
        if best is None or r.tokens_per_s_per_chip > best[0].tokens_per_s_per_chip:
            best = (r, inst, tp)
    if best is None:
        why = reasons[-1] if reasons else "no serving layout divides the chips"
        return Row(workload, mode, c, False, reason=why)
    r, inst, tp = best
    text = f"inst{inst} tp{tp} ep{r.plan.ep} {prec}" + (
        f" batch{r.plan.batch_per_chip:g}/chip") + (
        " +overlap" if r.plan.overlap else "") + (
        f" +mtp{r.plan.mtp_tokens}" if r.plan.mtp_tokens else "")
    return Row(workload, mode, c, True, step_time_s=r.tpot_s if mode == "decode" else r.step_time_s,
               tokens_per_s=r.tokens_per_s_per_chip * c.chips, plan=text,
               band=serve_band(model, c.system, r, cal) if bands else None)


# ------------------------------------------------------------------------- break-even

@dataclass(frozen=True)
class BreakEven:
    workload: str
    mode: str
    rival: Contender
    factor: float | None  # software factor at which CloudMatrix matches; None: cannot
    perfect_factor: float  # the factor at which CloudMatrix's best kernel reaches 100%
    current_compute: float  # the calibration's own Ascend software factors, for reference
    current_memory: float
    gap_at_current: float  # CloudMatrix / rival throughput - 1 under the calibration as is
    gap_at_factor: float | None  # the same at `factor` (~0), or at perfect when it cannot
    # the factors at which CloudMatrix matches the rival at the 10th and 90th percentile of
    # their throughput ratio (None: not within reach, MIN_FACTOR: at or below it); None: no band
    factor_range: tuple | None = None

    @property
    def verdict(self) -> str:
        now = (f"today {self.gap_at_current:+.0%} " +
               ("(ahead)" if self.gap_at_current >= 0 else "(behind)"))
        if self.factor is None:
            reach = "" if self.factor_range is None or self.factor_range[0] is None else \
                f"; within the band from x{self.factor_range[0]:.2f}"
            return (f"cannot match even at 1.0x or perfect (x{self.perfect_factor:.2f}: its best "
                    f"kernel at 100% of peak, still {self.gap_at_factor:+.0%}{reach}); {now}")
        if self.factor <= MIN_FACTOR:
            return f"matches at x{MIN_FACTOR} or less{self._range()}; {now}"
        beyond = " (beyond CUDA parity)" if self.factor > 1.0 else ""
        return f"matches at x{self.factor:.2f}{self._range()}{beyond}; {now}"

    def _range(self) -> str:
        if self.factor_range is None:
            return ""
        lo, hi = self.factor_range
        text = lambda f: "beyond reach" if f is None else f"x{f:.2f}"  # noqa: E731
        return f" (band {text(lo)}-{text(hi)})"

    def to_dict(self) -> dict:
        return {"workload": self.workload, "mode": self.mode, "rival": self.rival.system.name,
                "basis": self.rival.basis, "rival_chips": self.rival.chips,
                "factor_needed": self.factor, "perfect_factor": self.perfect_factor,
                "current_compute_factor": self.current_compute,
                "current_memory_factor": self.current_memory,
                "gap_at_current": self.gap_at_current, "gap_at_factor": self.gap_at_factor,
                "factor_range": None if self.factor_range is None else list(self.factor_range),
                "verdict": self.verdict}


class ReferenceCurve:
    """CloudMatrix's throughput for one workload as a function of the Ascend software factor,
    memoised. Training re-evaluates only candidate plans, the `top` best of the full plan space
    at a low, the calibration's, the CUDA-parity and the perfect factor: the best plan changes
    with the factor, and between those four it is assumed to stay among their leaders (at the
    calibration's factor this reproduces the full search exactly; tested). Serving likewise
    re-evaluates the SERVE_CANDIDATES best layouts (with their MTP choice) at the calibration's
    factor."""

    def __init__(self, model: Model, c: Contender, cal: Calibration, mode: str,
                 tpot_s: float, top: int = 32):
        self.model, self.c, self.cal, self.mode, self.tpot_s = model, c, cal, mode, tpot_s
        self.family = fam = c.system.chip.family
        sf = cal.software_factors.get(fam)
        self.current = (sf.compute, sf.memory) if sf else (1.0, 1.0)
        # the largest efficiency CloudMatrix's kernels reach per unit of factor: its own
        # measurements scale with factor/current, borrowed ones with the factor
        c0, m0 = self.current
        borrowed = cal.borrow.get(fam)
        per_unit = [v / c0 for e in cal.entries if e.family == fam for v in e.efficiencies]
        per_unit += [v * (m0 / c0 if e.kernel == "memory" else 1.0) for e in cal.entries
                     if borrowed is not None and e.family == borrowed for v in e.efficiencies]
        self.perfect = 1.0 / max(per_unit) if per_unit else 1.0
        self._memo: dict[float, float] = {}
        self._top = top
        self._plans = None
        self._layouts = None

    def calibration(self, factor: float) -> Calibration:
        """The calibration with the Ascend compute factor at `factor`: borrowed compute
        efficiencies x factor, borrowed memory ones x factor x (memory/compute factor as
        given), and Ascend's own measurements x factor / (compute factor as given). At the
        given factor this is the calibration itself."""
        c0, m0 = self.current
        scale = factor / c0
        own = replace(self.cal, entries=tuple(
            replace(e, efficiencies=tuple(v * scale for v in e.efficiencies))
            if e.family == self.family else e for e in self.cal.entries))
        return own.with_software_factor(self.family, factor, m0 * scale, "break-even search")

    def _candidates(self) -> dict:
        m, c = self.model, self.c
        seq, gb = m.seq_len, default_global_batch(m.seq_len)
        plans = enumerate_plans(m, device_view(c.system), c.chips * c.system.chip.devices, gb,
                                seq, "bf16", practice(c.system))
        keep: set[int] = set()
        for f in (0.25, self.current[0], 1.0, self.perfect):
            ev = evaluate(m, c.system, plans, self.calibration(f))
            order = np.argsort(np.where(ev.feasible, ev.step_time_s, np.inf))
            keep.update(int(i) for i in order[:self._top] if ev.feasible[i])
        idx = np.asarray(sorted(keep), dtype=np.int64)
        return {k: v[idx] for k, v in plans.items()}

    def tokens_per_s(self, factor: float) -> float:
        key = round(factor, 9)
        if key not in self._memo:
            self._memo[key] = self._tokens_per_s(self.calibration(factor))
        return self._memo[key]

    def _tokens_per_s(self, cal: Calibration) -> float:
        m, c = self.model, self.c
        if self.mode == "train":
            if self._plans is None:
                self._plans = self._candidates()
            if len(self._plans["tp"]) == 0:
                return 0.0
            seq, gb = m.seq_len, default_global_batch(m.seq_len)
            ev = evaluate(m, c.system, self._plans, cal)
            t = float(np.where(ev.feasible, ev.step_time_s, np.inf).min())
            return gb * seq / t if math.isfinite(t) else 0.0
        if self._layouts is None:  # the leaders at the calibration's own factor
            self._layouts = serve_ranking(m, c, self.calibration(self.current[0]), self.mode,
                                          self.tpot_s, SERVE_CANDIDATES)
        row = project_serve(m, c, cal, "", self.mode, self.tpot_s, self._layouts, bands=False)
        return row.tokens_per_s if row.feasible else 0.0


def _bisect(curve: "ReferenceCurve", target: float, tol: float) -> float | None:
    """The factor at which CloudMatrix reaches `target` tokens/s (throughput grows with the
    factor): MIN_FACTOR when it already does there, None when not even at perfect. A bracketed
    secant (Illinois) on log tokens, starting from the closest factors already evaluated,
    until the bracket is narrower than `tol` or the throughput is within 0.1% above the
    target; the factor returned always reaches it."""
    lo, hi = MIN_FACTOR, curve.perfect
    if curve.tokens_per_s(hi) < target:
        return None
    if curve.tokens_per_s(lo) >= target:
        return lo
    for f, t in curve._memo.items():  # narrow the bracket with what is already known
        if lo < f < hi:
            if t >= target:
                hi = f
            else:
                lo = f
    g = lambda f: math.log(max(curve.tokens_per_s(f), 1e-300) / target)  # noqa: E731
    g_lo, g_hi, side = g(lo), g(hi), 0
    while hi - lo > tol:
        mid = hi - g_hi * (hi - lo) / (g_hi - g_lo) if g_hi != g_lo else 0.5 * (lo + hi)
        mid = min(max(mid, lo + 0.1 * tol), hi - 0.1 * tol)
        g_mid = g(mid)
        if 0 <= g_mid < 1e-3:  # reaches the target, within 0.1%
            return mid
        if g_mid >= 0:
            hi, g_hi = mid, g_mid
            if side == 1:
                g_lo /= 2
            side = 1
        else:
            lo, g_lo = mid, g_mid
            if side == -1:
                g_hi /= 2
            side = -1
    return hi


def break_even(curve: ReferenceCurve, reference: Row, rival: Row,
               tol: float = BREAK_EVEN_TOL) -> BreakEven:
    """Bisect the Ascend software factor for CloudMatrix's throughput to equal the rival's
    (throughput grows with the factor); with bands, also to equal the rival's at the 10th and
    90th percentile of their throughput ratio (U.ratio_band)."""
    cur_c, cur_m = curve.current
    target = rival.tokens_per_s
    factor = _bisect(curve, target, tol)
    gap_at = curve.tokens_per_s(curve.perfect if factor is None else factor) / target - 1.0
    g_now = reference.tokens_per_s / target - 1.0 if reference.feasible else -1.0
    span = None
    if rival.band is not None and reference.band is not None and reference.feasible:
        central = rival.tokens_per_s / reference.tokens_per_s
        lo, hi = U.ratio_band(rival.band, reference.band, central)
        span = (_bisect(curve, target * lo / central, tol),
                _bisect(curve, target * hi / central, tol))
    return BreakEven(rival.workload, rival.mode, rival.contender, factor, curve.perfect,
                     cur_c, cur_m, g_now, gap_at, span)


MIN_FACTOR = 0.02  # below this the break-even is reported as "matches at x0.02 or less"


# ------------------------------------------------------------------------- the comparison

@dataclass(frozen=True)
class Versus:
    calibration: str
    calibration_notes: tuple[str, ...]
    tpot_s: float
    rows: tuple[Row, ...]
    break_evens: tuple[BreakEven, ...]

    def reference_row(self, workload: str, mode: str) -> Row:
        return next(r for r in self.rows if r.workload == workload and r.mode == mode
                    and r.contender.basis == "reference")

    def relative(self, row: Row) -> float | None:
        """The row's throughput over CloudMatrix's on the same workload (its basis decides
        what is equal: chips, power, price, or one system each)."""
        ref = self.reference_row(row.workload, row.mode)
        if not (row.feasible and ref.feasible):
            return None
        return row.tokens_per_s / ref.tokens_per_s

    def relative_band(self, row: Row) -> tuple[float, float] | None:
        """(p10, p90) of relative(row): the two projections' bands paired by sample. None for
        the reference itself, whose ratio to itself is exactly 1 (pairing its band with itself
        as independent errors would give it a spread it does not have)."""
        rel = self.relative(row)
        ref = self.reference_row(row.workload, row.mode)
        if rel is None or row is ref or row.band is None or ref.band is None:
            return None
        return U.ratio_band(row.band, ref.band, rel)

    def verdict(self, row: Row) -> str:
        """Whether the row's contender is ahead of or behind CloudMatrix across the band."""
        if row.contender.basis == "reference":
            return ""
        band = self.relative_band(row)
        if band is None:
            rel = self.relative(row)
            return "-" if rel is None else ("ahead" if rel > 1 else "behind")
        if band[0] > 1:
            return "ahead"
        if band[1] < 1:
            return "behind"
        return "too close to call"

    def to_dict(self) -> dict:
        return {
            "calibration": self.calibration, "calibration_notes": list(self.calibration_notes),
            "tpot_s": self.tpot_s, "train_tokens_per_step": TRAIN_TOKENS_PER_STEP,
            "decode_context_tokens": CONTEXT, "prefill_prompt_tokens": PROMPT,
            "rows": [{**r.to_dict(), "throughput_vs_reference": self.relative(r),
                      **dict(zip(("throughput_vs_reference_p10", "throughput_vs_reference_p90"),
                                 self.relative_band(r) or (None, None))),
                      "verdict": self.verdict(r)}
                     for r in self.rows],
            "break_even": [b.to_dict() for b in self.break_evens],
        }


def versus(workloads=tuple(WORKLOADS), calibration: Calibration | None = None,
           tpot_s: float = DEFAULT_TPOT_S, break_evens: bool = True,
           bands: bool = True) -> Versus:
    cal = calibration or default_calibration()
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ModelInputError(f"unknown workload {unknown[0]!r} (choose from "
                        f"{', '.join(WORKLOADS)})")
    if not tpot_s > 0:
        raise ModelInputError(f"the TPOT target must be positive, got {tpot_s * 1e3:g} ms")
    field_ = contenders()
    rows, bes = [], []
    for name in workloads:
        w = WORKLOADS[name]
        model = load_model(w.model)
        for mode in w.modes:
            these = [project_train(model, c, cal, name, bands) if mode == "train"
                     else project_serve(model, c, cal, name, mode, tpot_s, bands=bands)
                     for c in field_]
            rows += these
            if not break_evens:
                continue
            ref = these[0]
            curve = ReferenceCurve(model, ref.contender, cal, mode, tpot_s)
            bes += [break_even(curve, ref, r) for r in these[1:] if r.feasible]
    notes = tuple(cal.notes_for(field_[0].system.chip.family))
    return Versus(cal.name, notes, tpot_s, tuple(rows), tuple(bes))
