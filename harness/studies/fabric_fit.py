"""A fabric's latency and bandwidth fitted from a measured collective sweep, as a `MeasuredFabric`
that the collective model can use in place of the catalog's scale-up fabric.

Model: time_s = latency_s + s_per_byte * size_bytes (sizes in nccl-tests' convention, as
kernels/collectives.py measures them). Fitted by weighted least squares on relative residuals,
(measured - model) / measured, because the sweep's times span several decades and an unweighted
fit would let the largest size decide everything. Confidence intervals (95%, Student t with
m - 2 degrees of freedom) come from the usual covariance of weighted least squares; the error
the fit states for a size it was not fitted on is the 95% prediction interval, which adds the
scatter of a single new measurement to the uncertainty of the line.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

from clusters.collectives import MeasuredFabric, bus_factor
from harness.errors import UserError
from harness.resultset import ResultSet, load

# The collectives kernels/collectives.py measures (broadcast has no kernel).
MEASURED_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send")


def model_factor(op: str, n: int) -> float:
    """Bytes the clusters.collectives model moves over a rank's link per byte of S, for `op`
    among n ranks in one switched domain: ring all_reduce 2(n-1)/n, ring all_gather and
    reduce_scatter (n-1)/n, direct all_to_all 1 (the rank's own chunk is charged at the link rate;
    see that module's docstring), send 1. A MeasuredFabric with bandwidth model_factor / s_per_byte
    and latency = the fitted latency makes the model reproduce the fitted line (tested)."""
    if op == "all_to_all":
        return 1.0
    return bus_factor(op, n)


@dataclass(frozen=True)
class FabricFit:
    op: str
    ranks: int
    dtype: str
    source: str  # the result set it was fitted from
    size_bytes: tuple[float, ...]
    time_s: tuple[float, ...]  # measured medians
    fitted_s: tuple[float, ...]
    relative_residuals: tuple[float, ...]  # (measured - fitted) / measured
    latency_s: float
    latency_ci95_s: tuple[float, float]
    s_per_byte: float
    s_per_byte_ci95: tuple[float, float]
    rms_relative_residual: float  # sigma: residual sum of squares / (m - 2), square-rooted
    dof: int
    t95: float
    cov: tuple[tuple[float, float], tuple[float, float]]  # of (latency_s, s_per_byte)
    note: str = ""

    @property
    def algbw_bytes_per_s(self) -> float:
        """Large-message algbw: S / time as S -> infinity."""
        return 1.0 / self.s_per_byte

    @property
    def algbw_ci95_bytes_per_s(self) -> tuple[float, float]:
        lo, hi = self.s_per_byte_ci95
        return (1.0 / hi, 1.0 / lo if lo > 0 else math.inf)

    @property
    def busbw_bytes_per_s(self) -> float:
        return bus_factor(self.op, self.ranks) / self.s_per_byte

    @property
    def busbw_ci95_bytes_per_s(self) -> tuple[float, float]:
        f = bus_factor(self.op, self.ranks)
        lo, hi = self.algbw_ci95_bytes_per_s
        return (f * lo, f * hi)

    @property
    def fabric_bw_bytes_per_s(self) -> float:
        """The bandwidth the MeasuredFabric carries (see model_factor)."""
        return model_factor(self.op, self.ranks) / self.s_per_byte

    def predict(self, size_bytes) -> np.ndarray:
        return self.latency_s + self.s_per_byte * np.asarray(size_bytes, dtype=float)

    def prediction_error95(self, size_bytes, joint: bool = False) -> np.ndarray:
        """Relative half-width of the 95% prediction interval of one new measurement at each
        size: t * sqrt(sigma^2 + var(fitted line) / fitted^2). With joint=True the interval
        holds for all the given sizes at once (Bonferroni: each at 1 - 0.05/m), which is the
        claim to make when checking several held-out sizes together; five separate 95%
        intervals all hold only ~77% of the time."""
        s = np.asarray(size_bytes, dtype=float)
        c = np.asarray(self.cov)
        var_line = c[0, 0] + 2 * c[0, 1] * s + c[1, 1] * s * s
        mu = self.predict(s)
        t = self.t95
        if joint and s.size > 1 and self.dof > 0:
            t = float(sps.t.ppf(1 - 0.025 / s.size, self.dof))
        return t * np.sqrt(self.rms_relative_residual**2 + var_line / (mu * mu))

    def fabric(self, name: str | None = None) -> MeasuredFabric:
        """The fit as a fabric for clusters.collectives (Group(scale_up=...) or
        with_measured_scale_up); latency is floored at 0 (the fit can undershoot it)."""
        return MeasuredFabric(
            name=name or f"measured {self.op} x{self.ranks}",
            latency_s=max(self.latency_s, 0.0),
            bw_bytes_per_s=self.fabric_bw_bytes_per_s,
            source=f"measured: {self.source} ({self.op}, {self.ranks} ranks, {len(self.size_bytes)} sizes, "
                   f"alpha-beta fit by rackbench fit-fabric)",
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cov"] = [list(r) for r in self.cov]
        for k in ("size_bytes", "time_s", "fitted_s", "relative_residuals", "latency_ci95_s", "s_per_byte_ci95"):
            d[k] = list(d[k])
        d["prediction_error95"] = [float(e) for e in self.prediction_error95(self.size_bytes)]
        d.update(
            algbw_bytes_per_s=self.algbw_bytes_per_s, algbw_ci95_bytes_per_s=list(self.algbw_ci95_bytes_per_s),
            busbw_bytes_per_s=self.busbw_bytes_per_s, busbw_ci95_bytes_per_s=list(self.busbw_ci95_bytes_per_s),
            fabric={"name": (f := self.fabric()).name, "latency_s": f.latency_s, "bw_bytes_per_s": f.bw_bytes_per_s,
                    "source": f.source},
        )
        return d


def fit_alpha_beta(size_bytes, time_s, op: str, ranks: int, dtype: str = "", source: str = "") -> FabricFit:
    """Weighted least squares of time = latency + s_per_byte * size on relative residuals."""
    s = np.asarray(size_bytes, dtype=float)
    t = np.asarray(time_s, dtype=float)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError("sizes and times must be 1-D and of the same length")
    m = len(s)
    if len(np.unique(s)) < 3:
        raise UserError(f"{source or 'sweep'}: {op} has {len(np.unique(s))} distinct sizes; a fit with "
                        "confidence intervals needs at least 3")
    if np.any(t <= 0) or not np.all(np.isfinite(t)):
        raise UserError(f"{source or 'sweep'}: {op} has non-positive or missing times")
    # rows [1/t, S/t] . (latency, s_per_byte) = 1 - relative residual; columns scaled to unit
    # norm so the solve is well conditioned across 4+ decades of size
    design = np.stack([1.0 / t, s / t], axis=1)
    scale = np.linalg.norm(design, axis=0)
    theta_scaled, *_ = np.linalg.lstsq(design / scale, np.ones(m), rcond=None)
    latency, s_per_byte = theta_scaled / scale
    note = ""
    if s_per_byte <= 0:
        raise UserError(f"{source or 'sweep'}: {op} times do not grow with size; not an alpha-beta sweep")
    if latency < 0:
        note = (f"the fitted latency is negative ({latency:.3g} s): the sweep's small sizes are faster than the "
                "line through its large ones; the fabric uses 0")
    rel = 1.0 - design @ np.array([latency, s_per_byte])
    dof = m - 2
    sigma2 = float(rel @ rel) / dof if dof > 0 else 0.0
    xtx_inv = np.linalg.pinv((design / scale).T @ (design / scale)) / np.outer(scale, scale)
    cov = sigma2 * xtx_inv
    t95 = float(sps.t.ppf(0.975, dof)) if dof > 0 else math.inf
    half = t95 * np.sqrt(np.maximum(np.diag(cov), 0.0))
    fitted = latency + s_per_byte * s
    return FabricFit(
        op=op, ranks=int(ranks), dtype=dtype, source=source,
        size_bytes=tuple(float(x) for x in s), time_s=tuple(float(x) for x in t),
        fitted_s=tuple(float(x) for x in fitted), relative_residuals=tuple(float(x) for x in (t - fitted) / t),
        latency_s=float(latency), latency_ci95_s=(float(latency - half[0]), float(latency + half[0])),
        s_per_byte=float(s_per_byte), s_per_byte_ci95=(float(s_per_byte - half[1]), float(s_per_byte + half[1])),
        rms_relative_residual=math.sqrt(sigma2), dof=dof, t95=t95,
        cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))), note=note,
    )


def sweep_points(rs: ResultSet, op: str, ranks: int | None = None, dtype: str | None = None):
    """(ranks, dtype, sizes, median times) of the ok collective cases of `op` in a result set."""
    where = str(rs.path) if rs.path else "result set"
    if op not in MEASURED_OPS:
        raise UserError(f"collective {op!r} is not one the suite measures; valid: {', '.join(MEASURED_OPS)}")
    cases = [c for c in rs.cases if c.group == "collective" and c.params.get("op") == op]
    if not cases:
        ops = sorted({str(c.params.get("op")) for c in rs.cases if c.group == "collective"})
        raise UserError(f"{where}: no {op} case; its collectives: {', '.join(ops) or 'none'} (the default suite of "
                        "`rackbench run` sweeps all five)")
    measured = [c for c in cases if c.status == "ok" and c.median_s]
    ok = [c for c in measured if (ranks is None or c.params.get("ranks") == ranks)
          and (dtype is None or c.params.get("dtype") == dtype)]
    if not ok:
        wanted = " ".join(filter(None, [op, "case", f"over {ranks} ranks" if ranks is not None else "",
                                        f"in {dtype}" if dtype is not None else ""]))
        if measured:
            have: dict[tuple, int] = {}
            for c in measured:
                k = (c.params.get("ranks"), c.params.get("dtype"))
                have[k] = have.get(k, 0) + 1
            what = ", ".join(f"over {n} ranks in {d} ({k} sizes)" for (n, d), k in sorted(have.items(), key=str))
            raise UserError(f"{where}: no measured {wanted}; the set measured {op} {what}")
        reasons = sorted({f"{c.status}: {c.reason}" if c.reason else c.status for c in cases})
        raise UserError(f"{where}: no measured {wanted}; its {len(cases)} {op} case(s) were "
                        f"{'; '.join(reasons)[:200]}")
    for key in ("ranks", "dtype"):
        values = sorted({c.params.get(key) for c in ok}, key=str)
        if len(values) > 1:
            raise UserError(f"{where}: {op} was measured with several {key} ({', '.join(map(str, values))}); "
                            f"choose one {key}")
    sizes = np.array([float(c.params["size_bytes"]) for c in ok])
    times = np.array([float(c.median_s) for c in ok])
    order = np.argsort(sizes, kind="stable")
    return int(ok[0].params["ranks"]), str(ok[0].params.get("dtype", "")), sizes[order], times[order]


def fit_result_set(rs_or_path, op: str = "all_reduce", ranks: int | None = None, dtype: str | None = None) -> FabricFit:
    rs = rs_or_path if isinstance(rs_or_path, ResultSet) else load(Path(rs_or_path))
    n, dt, sizes, times = sweep_points(rs, op, ranks, dtype)
    return fit_alpha_beta(sizes, times, op, n, dt, str(rs.path) if rs.path else "result set")
