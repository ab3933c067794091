"""``droplab`` command line: parse argv, load config, call one function, print a summary.

Exit codes: 0 done; 2 bad input (usage, config, data); 130/143 interrupted (SIGINT/SIGTERM;
storage left consistent); 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from droplab import interrupts, runtime
from droplab.cli.config_view import config_yaml
from droplab.config.load import load_config
from droplab.config.schema import DataConfig

EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(ValueError):
    """Bad command-line usage (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="droplab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="one run, logged to MLflow")
    train.add_argument("args", nargs="*", help="[EXP.yaml] [key=value ...]")
    for name, text in (
        ("study", "create or resume an Optuna study"),
        ("compare", "paired multi-seed grid + statistics (resumes finished seed runs)"),
        ("report", "write runs/reports/<name>/report.html (+ .md, PNGs)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("experiment", help="EXP.yaml")
        p.add_argument("args", nargs="*", help="key=value overrides")
    replay = sub.add_parser("replay", help="rerun a logged run and check the metrics match")
    replay.add_argument("run_id", help="an MLflow run that trained a model (seed/trial/train)")
    replay.add_argument(
        "--tracking-uri", default=None, help="default: the MLflow store under paths.runs"
    )
    replay.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="largest absolute difference taken as a match (default 0: bit for bit); e.g. 1e-6 "
        "for a run logged on another CPU model",
    )
    ui = sub.add_parser("ui", help="MLflow UI and optuna-dashboard on 127.0.0.1")
    ui.add_argument("args", nargs="*", help="[EXP.yaml] [key=value ...]")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    ui.add_argument("--port", type=int, default=5000, help="MLflow UI port")
    ui.add_argument("--dashboard-port", type=int, default=8080, help="optuna-dashboard port")
    config = sub.add_parser("config", help="print the resolved config (what a run would use)")
    config.add_argument("--diff", action="store_true", help=argparse.SUPPRESS)
    config.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        help="[EXP.yaml] [key=value ...] [--diff: only what differs from conf/default.yaml]",
    )
    verify = sub.add_parser("verify", help="reference checks against published numbers")
    verify.add_argument("--quick", action="store_true", help="the CI-sized version (~1 min)")
    verify.add_argument("args", nargs="*", help="key=value overrides for every check")
    data = sub.add_parser("data", help="data utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="export the synthetic fraud table as CSV")
    synth.add_argument("--rows", type=int, required=True)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    defaults = DataConfig()
    synth.add_argument("--fraud-rate", type=float, default=defaults.fraud_rate)
    synth.add_argument("--label-noise", type=float, default=defaults.label_noise)
    return parser


def _split_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[EXP.yaml] [key=value ...]`` -> ``(experiment, overrides)``."""
    if args and "=" not in args[0]:
        return args[0], list(args[1:])
    stray = [a for a in args if "=" not in a]
    if stray:
        raise UsageError(f"expected key=value, got {stray[0]!r} (the experiment file comes first)")
    return None, list(args)


# Each command validates its config before it imports torch, Lightning and MLflow (seconds):
# a refusal, --help and `droplab config` stay well under a second. The commands that use
# Optuna quiet its logger once their config is valid (importing Optuna resets it).


def _train(ns: argparse.Namespace) -> int:
    experiment, overrides = _split_args(ns.args)
    cfg = load_config(experiment, overrides)
    from droplab.cli.summaries import print_train
    from droplab.train import train

    print_train(cfg, train(cfg, progress=True))
    return EXIT_OK


def _study(ns: argparse.Namespace) -> int:
    cfg = load_config(ns.experiment, ns.args)
    runtime.quiet_optuna()
    from droplab.cli.summaries import print_study
    from droplab.study.run import run

    print_study(cfg, run(cfg, progress=True))
    return EXIT_OK


def _compare(ns: argparse.Namespace) -> int:
    cfg = load_config(ns.experiment, ns.args)
    runtime.quiet_optuna()
    from droplab.cli.summaries import print_comparison
    from droplab.compare.run import run_comparison

    print_comparison(cfg, run_comparison(cfg, progress=True))
    return EXIT_OK


def _replay(ns: argparse.Namespace) -> int:
    runtime.quiet_optuna()
    from droplab.cli.summaries import print_replay
    from droplab.replay import replay

    result = replay(ns.run_id, ns.tracking_uri, ns.tolerance)
    print_replay(result)
    return result.exit_code


def _report(ns: argparse.Namespace) -> int:
    cfg = load_config(ns.experiment, ns.args)
    runtime.quiet_optuna()
    from droplab.compare.report import write_comparison_report
    from droplab.study.report import write_report

    # An experiment with a compare grid is a comparison; otherwise it is a study.
    paths = write_comparison_report(cfg) if cfg.compare.grid else write_report(cfg)
    print(f"report: {paths.html}\n        {paths.markdown}")
    return EXIT_OK


def _ui(ns: argparse.Namespace) -> int:
    experiment, overrides = _split_args(ns.args)
    cfg = load_config(experiment, overrides)
    runtime.quiet_optuna()
    from droplab.ui import serve

    return serve(cfg, ns.host, ns.port, ns.dashboard_port)


def _config(ns: argparse.Namespace) -> int:
    diff = ns.diff or "--diff" in ns.args  # first, or anywhere among the overrides
    experiment, overrides = _split_args([a for a in ns.args if a != "--diff"])
    cfg = load_config(experiment, overrides)
    print(config_yaml(cfg, load_config() if diff else None), end="")
    return EXIT_OK


def _verify(ns: argparse.Namespace) -> int:
    from droplab.config.load import load_config
    from droplab.verify.runner import main as verify

    _, overrides = _split_args(ns.args)
    load_config(None, overrides)  # a bad override stops here: one line, exit 2
    runtime.quiet_optuna()
    return verify(ns.quick, overrides)


def _data(ns: argparse.Namespace) -> int:
    from droplab.data.synthetic import export_synthetic

    if ns.rows < 10:
        raise UsageError(f"--rows={ns.rows} is too small; allowed: an integer >= 10")
    out = export_synthetic(Path(ns.out), ns.rows, ns.fraud_rate, ns.label_noise, ns.seed)
    print(f"wrote {ns.rows} rows to {out}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train,
    "study": _study,
    "compare": _compare,
    "replay": _replay,
    "report": _report,
    "ui": _ui,
    "config": _config,
    "verify": _verify,
    "data": _data,
}


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from droplab.config.schema import ConfigError
    from droplab.data.errors import DataError

    return (ConfigError, DataError, UsageError)


def _expected_failures() -> tuple[type[BaseException], ...]:
    from droplab.compare.results import ComparisonFailed
    from droplab.study.close import StudyFailed

    return (StudyFailed, ComparisonFailed)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one droplab command; returns the process exit code."""
    try:
        ns = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage line
        return EXIT_OK if exc.code == 0 else EXIT_BAD_INPUT
    runtime.setup(optuna=False)  # the commands that use Optuna quiet it themselves
    interrupts.install()
    try:
        return COMMANDS[ns.command](ns)
    except interrupts.Interrupted as exc:
        print(f"\ndroplab: interrupted by {exc}; {_resume_hint(ns)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"\ndroplab: interrupted; {_resume_hint(ns)}", file=sys.stderr)
        return 130
    except _bad_input_types() as exc:
        print(f"droplab: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _expected_failures() as exc:
        print(f"droplab: {exc}", file=sys.stderr)
        return EXIT_UNEXPECTED
    except Exception:
        traceback.print_exc()
        return EXIT_UNEXPECTED


def _resume_hint(ns: argparse.Namespace) -> str:
    if ns.command == "study":
        return "run the same command again to resume (finished trials are kept)"
    if ns.command == "compare":
        return "run the same command again to resume (finished seed runs are reused)"
    return "nothing was half-written; run the same command again"


def entry() -> None:
    """Console-script entry point: the process ends as soon as the command is done."""
    runtime.exit_now(main())
