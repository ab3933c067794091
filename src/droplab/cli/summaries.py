"""What a command prints when it is done: a short table of what was found and where it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from droplab import metrics
from droplab.config.identity import mask_secrets
from droplab.config.paths import storage_source, tracking_source, tracking_uri, ui_hint
from droplab.config.schema import Config
from droplab.fit.trainer import predict_proba

# Types of what each command returns, for annotations only: importing the modules themselves
# would load every command's dependencies (SciPy's statistics, Optuna) into each command.
if TYPE_CHECKING:
    from droplab.compare.results import ComparisonOutcome
    from droplab.data.splits import Dataset
    from droplab.replay import ReplayResult
    from droplab.study.close import StudyOutcome
    from droplab.tracking.runs import TrackedFit


def print_train(cfg: Config, tracked: TrackedFit) -> None:
    """Best epoch, val AUPRC, the gap at the best and the final epoch, the run and the UI."""
    s, r = tracked.result.summary, tracked.result
    print(
        f"\n{cfg.name}: {len(r.history)} epochs in {r.seconds:.1f}s on {r.device} "
        f"({r.threads} thread{'s' if r.threads > 1 else ''})"
    )
    monitor = metrics.resolve_monitor(cfg.train.monitor, r.history[0] if r.history else {})
    data = r.data
    rows = [
        ("data", f"{data.source}: {data.n_features} features, {_target(data)}"),
        ("best epoch", f"{s[metrics.BEST_EPOCH]:.0f} (by {monitor})"),
        *_headline(s),
        ("val loss at best", f"{s[metrics.BEST_VAL_LOSS]:.4f}"),
        ("gap/loss at best", f"{s[metrics.BEST_GAP_LOSS]:+.4f}"),
        ("gap/loss final", f"{s[metrics.FINAL_GAP_LOSS]:+.4f}"),
        ("MLflow run", tracked.run_id if cfg.tracking.enabled else "(tracking disabled)"),
        ("MLflow store", store_line(cfg)),
        ("open", ui_hint(cfg)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    if cfg.train.predict:
        print("  predictions (P(class=1) for each input row):")
        for row, probs in zip(cfg.train.predict, predict_proba(r, cfg.train.predict), strict=True):
            print(f"    {list(row)} -> {probs[-1]:.4f}")


def _target(data: Dataset) -> str:
    if data.is_regression:
        return f"regression (train mean {data.target_mean:.4g}, std {data.target_std:.4g})"
    if data.positive is not None:  # droplab chose (or matched) the positive text label
        return f"{data.n_classes} classes, positive = {data.positive!r}"
    return f"{data.n_classes} classes"


def _headline(s: dict[str, float]) -> list[tuple[str, str]]:
    if metrics.BEST_VAL_RMSE in s:
        return [
            ("val RMSE at best", f"{s[metrics.BEST_VAL_RMSE]:.4f}"),
            ("val NLL at best", f"{s[metrics.BEST_VAL_NLL]:.4f}"),
            ("val RMSE final", f"{s[metrics.FINAL_VAL_RMSE]:.4f}"),
        ]
    return [
        ("val AUPRC at best", f"{s[metrics.BEST_VAL_AUPRC]:.4f}"),
        ("val AUPRC final", f"{s[metrics.FINAL_VAL_AUPRC]:.4f}"),
    ]


def print_study(cfg: Config, outcome: StudyOutcome) -> None:
    """Counts by state, the top trials, failures, and where the results are."""
    counts = ", ".join(f"{n} {s.lower()}" for s, n in outcome.counts.items() if n)
    print(
        f"\nstudy {outcome.name} ({outcome.storage}, from {storage_source(cfg)}): "
        f"{outcome.started} trial(s) run now "
        f"in {outcome.seconds:.1f}s; in total {counts or 'none'}"
    )
    if outcome.top:
        print(
            f"  {'trial':>5}  {'dropout':>7}  {'width':>5}  {'val AUPRC':>9}  "
            f"{'gap/loss@best':>13}  {'final':>7}  state"
        )
        for r in outcome.top:
            print(
                f"  {r['trial']:>5}  {_fmt(r['dropout'])}  {r['width']:>5}  "
                f"{r['val_auprc']:>9.4f}  {r['gap_loss']:>+13.4f}  {r['final_gap_loss']:>+7.4f}  "
                f"{r['state']}"
            )
    for line in outcome.failed_now:
        print(f"  failed: {line}")
    if outcome.failed_now:
        print("  failed trials free their slot: run the same command again to replace them")
    for note in outcome.notes:
        print(f"  note: {note}")
    if outcome.parent_run_id:
        print(f"  MLflow parent run: {outcome.parent_run_id}")
    if outcome.report is not None:
        print(f"  report: {outcome.report}")
    print(f"  MLflow store: {store_line(cfg)}")
    print(f"  open: {ui_hint(cfg)}")


def _fmt(dropout: object) -> str:
    return f"{dropout:>7.3f}" if isinstance(dropout, float) else f"{dropout!s:>7}"


def print_comparison(cfg: Config, outcome: ComparisonOutcome) -> None:
    """What ran, the findings, and where the table, report and runs are."""

    print(
        f"\ncomparison {outcome.name}: {outcome.trained} seed run(s) trained now, "
        f"{outcome.reused} reused, {len(outcome.failed)} failed, in {outcome.seconds:.1f}s"
    )
    report = outcome.report
    for sentence in report.findings if report else []:
        print(f"  {sentence}")
    for line in outcome.failed:
        print(f"  failed: {line}")
    for note in outcome.notes:
        print(f"  note: {note}")
    print(f"  MLflow parent run: {outcome.parent_run_id}")
    if report is not None:
        print(f"  table: {report.table_csv}\n  report: {report.html}")
    print(f"  MLflow store: {store_line(cfg)}")
    print(f"  open: {ui_hint(cfg)}")


def print_replay(result: ReplayResult) -> None:
    """One line per check, the notes, and the verdict."""
    print(f"\nreplay of run {result.run_id} ({result.uri}) in {result.seconds:.1f}s")
    width = max((len(c.name) for c in result.checks), default=0)
    for check in result.checks:
        print(f"  {'match' if check.ok else 'MISMATCH':<8}  {check.name:<{width}}  {check.detail}")
    for note in result.notes:
        print(f"  note: {note}")
    bad = sum(not c.ok for c in result.checks)
    verdict = "all match" if result.matched else f"{bad} of {len(result.checks)} do not match"
    print(f"  {verdict} (exit {result.exit_code})")


def store_line(cfg: Config) -> str:
    """The MLflow store a command used and which setting chose it."""
    if not cfg.tracking.enabled:
        return "(tracking disabled)"
    return f"{mask_secrets(tracking_uri(cfg))} (from {tracking_source(cfg)})"
