"""Short runs pay only for what they use: the quick commands import no numerical stack, the
train path imports no study or statistics module, and a finished command exits at once with its
output and its run complete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import REPO, TINY

HEAVY = ("torch", "optuna", "matplotlib", "mlflow", "pandas", "sklearn", "scipy")


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _imported_after(command: str) -> set[str]:
    """The heavy packages a process holds after ``droplab.cli.main.main(command)``."""
    code = (
        "import sys\nfrom droplab.cli.main import main\n"
        f"main({command.split()!r})\n"
        f"print('IMPORTED', *sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = _python(code)
    line = [x for x in done.stdout.splitlines() if x.startswith("IMPORTED")]
    assert line, done.stderr[-2000:]
    return set(line[0].split()[1:])


def test_config_and_refusals_import_no_numerical_stack() -> None:
    # `droplab config` and a refused train print from the config alone
    assert _imported_after("config") == set()
    assert _imported_after("train model.width=0") == set()


def test_train_path_imports_no_study_statistics_or_optuna() -> None:
    code = (
        "import sys\nfrom droplab import runtime\nruntime.setup(optuna=False)\n"
        "import droplab.train, droplab.cli.summaries\n"
        "mods = ('optuna', 'droplab.compare.stats', 'droplab.study.close', 'mlflow.pytorch')\n"
        "print('IMPORTED', *[m for m in mods if m in sys.modules])\n"
    )
    done = _python(code)
    # the commands' return types are annotations only: no other command's modules are loaded
    assert "IMPORTED" in done.stdout and done.stdout.split("IMPORTED")[1].split() == []


def test_quiet_optuna_after_it_is_imported() -> None:
    code = (
        "from droplab import runtime\nruntime.setup(optuna=False)\n"
        "import optuna\nruntime.quiet_optuna()\n"
        "optuna.create_study()\nprint('LEVEL', optuna.logging.get_verbosity())\n"
    )
    done = _python(code)
    # Optuna's "A new study created" INFO line is not printed; its level is WARNING
    assert "LEVEL 30" in done.stdout and "A new study" not in done.stderr


def test_exit_now_runs_exit_handlers_and_keeps_the_code() -> None:
    code = (
        "import atexit\nfrom droplab import runtime\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "print('output', end='')\nruntime.exit_now(3)\n"
    )
    done = _python(code)
    # the exit code, the unflushed output and the exit handlers all survive the fast exit
    assert (
        done.returncode == 3 and done.stdout.startswith("output") and "handler ran" in done.stdout
    )


@pytest.mark.slow
def test_train_process_ends_with_its_summary_and_a_finished_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code = "from droplab.cli.main import entry\nentry()\n"
    done = _python(code, "train", f"paths.runs={runs}", *TINY)
    # exit 0 and the whole summary is printed before the process ends
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best epoch" in done.stdout and "mlflow ui" in done.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{runs}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("droplab").experiment_id])
    # the run was closed FINISHED, with its artifacts, before the process ended
    assert run.info.status == "FINISHED"
    assert {"activations.png", "manifest.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
