"""Run every reference check and summarise: the one entry of ``droplab verify``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from droplab.verify import boston_mc, caravan_gap, digits_direction, mnist1d_mlp
from droplab.verify.check import CheckResult

Check = Callable[[bool, Sequence[str]], list[CheckResult]]

CHECKS: dict[str, Check] = {
    "mnist1d_mlp": mnist1d_mlp.run,
    "boston_mc": boston_mc.run,
    "caravan_gap": caravan_gap.run,
    "digits_direction": digits_direction.run,
}


def _echo(line: str) -> None:
    print(line, flush=True)  # each verdict as it comes, even into a file or a pipe


def verify(
    quick: bool, overrides: Sequence[str] = (), echo: Callable[[str], None] = _echo
) -> list[CheckResult]:
    """Run the checks in order, echoing each result line as it comes.

    Args:
        quick: The CI-sized version of each check.
        overrides: ``key=value`` settings applied to every check's config (e.g.
            ``train.threads=2``); the checks' own settings come first.
        echo: Where each ``NAME measured X published Y tolerance T PASS|FAIL`` line goes.

    Returns:
        Every result, in order.
    """
    results: list[CheckResult] = []
    for run in CHECKS.values():
        for result in run(quick, overrides):
            echo(result.line())
            results.append(result)
    return results


def summary_table(results: Sequence[CheckResult], seconds: float | None = None) -> str:
    """The results as an aligned table, with the verdict and the total wall time."""
    rows = [("check", "measured", "published", "tolerance", "result", "s")]
    rows += [
        (r.name, r.measured, r.published, r.tolerance, "PASS" if r.passed else "FAIL",
         f"{r.seconds:.0f}")
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    failed = sum(not r.passed for r in results)
    verdict = "all passed" if not failed else f"{failed} of {len(results)} FAILED"
    took = f" in {seconds:.0f}s" if seconds is not None else ""
    return "\n".join([*lines, f"{verdict}{took}"])


def main(quick: bool, overrides: Sequence[str] = ()) -> int:
    """Run, print the table; 0 only when every check passed."""
    start = time.perf_counter()
    results = verify(quick, overrides)
    print("\n" + summary_table(results, time.perf_counter() - start))
    return 0 if all(r.passed for r in results) else 1
