"""Paired bursts: two running servers loaded in turn, a few seconds each, many times over.

On this shared 2-core machine one whole-run measurement differs from the next by up to ±15%
(an A/A run of two identical services gave per-round ratios of 0.92 to 1.16), because the
machine's speed drifts over minutes. Starting both servers once and alternating short wrk
bursts between them puts each pair of bursts within seconds of each other, under the same
drift; the median of the per-pair ratios is then steady enough to tell a few percent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from common import median
from wrkrun import SCRIPT, run_wrk

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

WARMUP_S = 2.0


class Target(NamedTuple):
    name: str
    port: int
    pid: int


def paired_bursts(
    first: Target,
    second: Target,
    *,
    connections: int,
    burst_s: float,
    bursts: int,
    script: Path = SCRIPT,
) -> dict[str, Any]:
    """Warm both up, then ``bursts`` pairs of ``burst_s`` wrk runs (of ``script``), the order
    flipping each pair. Returns each side's rates, every result, and the ratios first / second."""
    for target in (first, second):
        run_wrk(target.port, connections, WARMUP_S, target.pid, script)
    rates: dict[str, list[float]] = {first.name: [], second.name: []}
    results: dict[str, list[Any]] = {first.name: [], second.name: []}
    for number in range(bursts):
        for target in (first, second) if number % 2 == 0 else (second, first):
            result = run_wrk(target.port, connections, burst_s, target.pid, script)
            rates[target.name].append(result.rps)
            results[target.name].append(result)
    ratios = [a / b for a, b in zip(rates[first.name], rates[second.name], strict=True)]
    return {
        "rates": rates,
        "results": results,
        "pair_ratios": ratios,
        "median_pair_ratio": median(ratios),
        "ratio_of_totals": sum(rates[first.name]) / sum(rates[second.name]),
        "non_2xx": {name: sum(r.non_2xx for r in rs) for name, rs in results.items()},
        "socket_errors": {name: sum(r.socket_errors for r in rs) for name, rs in results.items()},
        "cpu_us_per_request": {
            name: median([r.cpu_us_per_request for r in rs]) for name, rs in results.items()
        },
    }


def describe(outcome: dict[str, Any], first: str, second: str) -> str:
    ratios: Sequence[float] = outcome["pair_ratios"]
    low, high = min(ratios), max(ratios)
    median_ratio = outcome["median_pair_ratio"]
    return (
        f"{first} / {second}: median of {len(ratios)} paired bursts {median_ratio:.3f}"
        f" (pairs ranged {low:.3f}-{high:.3f}), ratio of totals {outcome['ratio_of_totals']:.3f};"
        f" CPU µs/request {outcome['cpu_us_per_request'][first]:.0f} vs"
        f" {outcome['cpu_us_per_request'][second]:.0f}"
    )
