"""Figures computed from a finished result set and stored back into it: the closing-the-loop
projection of its training-step case (clusters.closing_loop)."""
from __future__ import annotations

from harness.errors import UserError
from harness.resultset import ResultSet

EXTRA_KEYS = ("projected_step_time_s", "projection_error", "projection_breakdown_s")


def add_projections(rs: ResultSet) -> None:
    """Project the set's training-step case from the set's own kernel cases and store
    `projected_step_time_s`, `projection_error` (signed fraction) and `projection_breakdown_s`
    in its extra. Without an ok training-step case, or when the set lacks what the projection
    needs, the case (if any) gets `projection_skipped` with the reason and nothing else."""
    from clusters.closing_loop import close_loop, train_step_case  # lazy: pandas, the catalog

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
    except UserError as exc:
        case.extra["projection_skipped"] = str(exc)
        return
    case.extra.update(loop.to_extra())


def closing_loop_line(rs: ResultSet) -> str | None:
    """One line for `rackbench show`: measured vs projected step and the error."""
    from clusters.closing_loop import TOLERANCE, train_step_case
    from harness.format import duration

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
