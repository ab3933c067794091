"""`droplab ui`: real MLflow and optuna-dashboard servers on a real study, read in Chromium.

The browser tests need Chromium and its driver (`apt-get install chromium chromium-driver`)
and Selenium (the dev extra); without them they are skipped, unless ``CI`` is set, where they
fail. Screenshots go to ``tmp_path``; with ``DROPLAB_SCREENSHOTS=1`` (or a folder) they are
also copied to ``docs/screenshots/``, from a larger study whose curves are worth reading.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from droplab import ui
from droplab.cli.main import main
from droplab.config import Config, ConfigError, experiment_name
from droplab.study.run import run

from .conftest import REPO
from .study_helpers import by_kind, study_config

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 90.0  # a React page on 2 busy cores can take a while to render
# Widths up to 256 and enough epochs that a wide net without dropout visibly overfits.
SPACE = (
    "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}, "
    "model.width: {type: int, low: 8, high: 256, log: true}}"
)
STUDY = ["study.n_trials=4", "study.baseline_widths=[256]", "train.epochs=6", SPACE]
DOCS_STUDY = ["study.n_trials=10", "study.baseline_widths=[16, 256]", "train.epochs=15", SPACE]
DOCS_DATA = ["name=fraud_dropout_width", "data.rows=6000", "data.fraud_rate=0.03"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def screenshot_dir() -> Path | None:
    wanted = os.environ.get("DROPLAB_SCREENSHOTS", "")
    if wanted in ("", "0"):
        return None
    return REPO / "docs" / "screenshots" if wanted == "1" else Path(wanted)


# ---------------------------------------------------------------- a real store, real servers


@dataclass
class Served:
    cfg: Config
    urls: dict[str, str]
    client: MlflowClient
    experiment_id: str
    parent: Run
    trials: list[Run]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A finished study in a real SQLite MLflow store and Optuna storage."""
    docs = screenshot_dir() is not None
    extra = [*DOCS_STUDY, *DOCS_DATA] if docs else STUDY
    cfg = study_config(tmp_path_factory.mktemp("ui"), *extra, "study.pruner=none")
    run(cfg)
    return cfg


@pytest.fixture(scope="module")
def served(store: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Both UIs on free loopback ports, started and stopped the way `droplab ui` does."""
    services = ui.plan(store, ui.HOST, free_port(), free_port())
    children = ui.launch(services, tmp_path_factory.mktemp("ui-logs"))
    try:
        ui.wait_ready(children)
        urls = ui.deep_links(store, services)
        client = MlflowClient(tracking_uri=services[0].url)
        exp = client.get_experiment_by_name(experiment_name(store))
        assert exp is not None
        runs = client.search_runs([exp.experiment_id], max_results=100)
        trials = sorted(by_kind(runs, "trial"), key=lambda r: r.info.run_name)
        parent = by_kind(runs, "study")[0]
        yield Served(store, urls, client, exp.experiment_id, parent, trials)
    finally:
        ui.stop(children)


# ---------------------------------------------------------------- headless Chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Selenium and the system chromedriver (nothing downloaded)."""
    webdriver = _require_browser()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="droplab-chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1920,1080",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _require_browser() -> Any:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        reason = f"browser tests need {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return webdriver


def visit(driver: Any, url: str) -> None:
    """Open ``url`` as a fresh page load, as a link from elsewhere would.

    Only the part after ``#`` changes between MLflow views, and the single-page app then
    reuses its state: MLflow 3.17's metric page fails going from one run's plot to several
    runs' plot that way ("Cannot read properties of undefined").
    """
    driver.get("about:blank")
    driver.get(url)


def body_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for(driver: Any, *texts: str, timeout: float = WAIT) -> str:
    """Wait until the rendered page shows every one of ``texts``; returns the page text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: all(t in body_text(d) for t in texts)
        )
    except TimeoutException:
        missing = [t for t in texts if t not in body_text(driver)]
        raise AssertionError(
            f"page never showed {missing}; it shows:\n{body_text(driver)}"
        ) from None
    time.sleep(1.0)  # let charts finish drawing before a screenshot
    return body_text(driver)


def shoot(driver: Any, tmp_path: Path, name: str) -> Path:
    """Save a screenshot in ``tmp_path`` (and in the docs when asked to)."""
    path = tmp_path / name
    driver.save_screenshot(str(path))
    target = screenshot_dir()
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


# ---------------------------------------------------------------- MLflow UI


def mlflow_view(driver: Any, served: Served) -> None:
    """Browser state a reviewer sets once: training view, the overfitting columns, no chat.

    These are the MLflow UI's own saved settings (localStorage); if a later MLflow renames
    them, the page falls back to its defaults and only the screenshots get plainer.
    """
    base = served.urls[ui.MLFLOW].split("#")[0]
    driver.get(base + "health")  # same origin, no app: a clean place to write localStorage
    columns = ["params.`model.dropout`", "params.`model.width`", "metrics.`best/gap_loss`"]
    columns += ["metrics.`final/gap_loss`", "metrics.`best/val_auprc`", "tags.`droplab.state`"]
    state = {"selectedColumns": columns, "columnWidths": {"attributes.`Run Name`": 240}}
    saved = {
        f'MLflowLocalStorage-1.1-ExperimentPage-["{served.experiment_id}"]-ReactComponentState': (
            json.dumps(state)
        ),
        "mlflow.workflowType_v1": json.dumps("machine_learning"),
        "mlflow.assistant.panelOpen_v1": "false",
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    }
    for key, value in saved.items():
        driver.execute_script(
            "window.localStorage.setItem(arguments[0], arguments[1])", key, value
        )


def metric_page(served: Served, runs: list[Run], keys: list[str]) -> str:
    """MLflow's URL-addressable metric plot: ``keys`` of ``runs`` against the epoch."""
    quote = urllib.parse.quote
    query = {
        "runs": json.dumps([r.info.run_id for r in runs]),
        "metric": quote(json.dumps(keys[0])),
        "experiments": json.dumps([served.experiment_id]),
        "plot_metric_keys": quote(json.dumps(keys)),
        "plot_layout": "{}",
        "x_axis": "step",
        "y_axis_scale": "linear",
        "line_smoothness": "1",
        "show_point": "true",
        "deselected_curves": "[]",
        "last_linear_y_axis_range": "[]",
    }
    text = "&".join(f"{k}={v}" for k, v in query.items()).replace(" ", "")
    return served.urls[ui.MLFLOW].split("#")[0] + "#/metric/?" + text


def expand(driver: Any, run_name: str) -> None:
    """Click the +/- button beside a parent run in the run list."""
    from selenium.webdriver.common.by import By

    xpath = f"//div[@role='gridcell'][.//a[normalize-space()='{run_name}']]//button"
    driver.find_element(By.XPATH, xpath).click()


def widen_run_names(driver: Any, pixels: int = 130) -> None:
    """Drag the Run Name column wider, so that ``p=... w=...`` is not cut off."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    css = "[role=columnheader][col-id='attributes.`Run Name`'] .ag-header-cell-resize"
    for handle in driver.find_elements(By.CSS_SELECTOR, css)[:1]:
        ActionChains(driver).click_and_hold(handle).move_by_offset(pixels, 0).release().perform()


def open_artifact(driver: Any, *names: str) -> None:
    """Click through the artifact tree: folders open, a file shows its preview."""
    from selenium.webdriver.common.by import By

    for name in names:
        driver.find_element(By.XPATH, f"//*[normalize-space(text())='{name}']").click()
        time.sleep(0.5)


@pytest.mark.slow
def test_mlflow_ui_shows_the_study_hierarchy(served: Served, browser: Any, tmp_path: Path) -> None:
    mlflow_view(browser, served)
    names = [r.info.run_name for r in served.trials]
    visit(browser, served.urls[ui.MLFLOW])
    page = wait_for(browser, served.parent.info.run_name)
    # the study is one parent row; its trials are nested under it, hidden until expanded
    assert not any(name in page for name in names)
    expand(browser, served.parent.info.run_name)
    wait_for(browser, *names)
    widen_run_names(browser)
    shoot(browser, tmp_path, "mlflow_runs.png")
    # trial runs are named for what they are: number, dropout p and width w
    assert all(n.startswith("trial-") and " p=" in n and " w=" in n for n in names)


@pytest.mark.slow
def test_mlflow_ui_shows_the_gap_curves(served: Served, browser: Any, tmp_path: Path) -> None:
    mlflow_view(browser, served)
    widest = max(served.trials, key=lambda r: int(r.data.params["model.width"]))
    base = served.urls[ui.MLFLOW].split("#")[0]
    visit(browser, f"{base}#/experiments/{served.experiment_id}/runs/{widest.info.run_id}")
    page = wait_for(browser, widest.info.run_name, "gap/loss", "train/loss", "val/loss")
    # a trial's page lists its per-epoch gap, train and val metrics by their MLflow keys
    assert "gap/auprc" in page and "best/gap_loss" in page
    visit(browser, metric_page(served, [widest], ["train/loss", "val/loss", "gap/loss"]))
    page = wait_for(browser, "train/loss vs val/loss vs gap/loss", "(step=")
    shoot(browser, tmp_path, "mlflow_trial_loss_curves.png")
    # the curves are per epoch: the table ends at the last epoch's step
    assert f"(step={served.cfg.train.epochs})" in page
    visit(browser, metric_page(served, served.trials, ["gap/loss"]))
    wait_for(browser, *[f"{r.info.run_name} (gap/loss)" for r in served.trials])
    # one gap/loss curve per trial, labelled with the trial's name
    shoot(browser, tmp_path, "mlflow_gap_loss_by_trial.png")


@pytest.mark.slow
def test_mlflow_ui_shows_the_parent_artifacts(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    mlflow_view(browser, served)
    base = served.urls[ui.MLFLOW].split("#")[0]
    parent = served.parent.info.run_id
    visit(browser, f"{base}#/experiments/{served.experiment_id}/runs/{parent}/artifacts")
    wait_for(browser, served.parent.info.run_name, "config.yaml", "report")
    open_artifact(browser, "report", "gap_vs_dropout.png")
    report = [Path(a.path).name for a in served.client.list_artifacts(parent, "report")]
    # the parent holds the report and its plots, and the page lists every one of them
    assert {"report.html", "gap_vs_dropout.png", "gap_heatmap.png"} <= set(report)
    wait_for(browser, *report)
    shoot(browser, tmp_path, "mlflow_parent_artifacts.png")


@pytest.mark.slow
def test_mlflow_models_tab_shows_the_best_model(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    mlflow_view(browser, served)
    base = served.urls[ui.MLFLOW].split("#")[0]
    models = served.client.search_logged_models(experiment_ids=[served.experiment_id])
    assert len(models) == 1
    source = next(r for r in served.trials if r.info.run_id == models[0].source_run_id)
    visit(browser, f"{base}#/experiments/{served.experiment_id}/models")
    page = wait_for(browser, models[0].name, source.info.run_name)
    # the best model is listed with the trial run it came from and that trial's metrics
    assert "best/epoch" in page and "best/val_loss" in page
    shoot(browser, tmp_path, "mlflow_logged_model.png")


# ---------------------------------------------------------------- optuna-dashboard


@pytest.mark.slow
def test_optuna_dashboard_shows_the_study(served: Served, browser: Any, tmp_path: Path) -> None:
    url = served.urls[ui.DASHBOARD]
    # the printed URL points at this study, not at the list of studies
    assert "/dashboard/studies/" in url
    visit(browser, url)
    page = wait_for(browser, f"{served.cfg.study.name or served.cfg.name} (id=", "History")
    shoot(browser, tmp_path, "optuna_dashboard_study.png")
    # the objective carries its name, not "Objective 0"
    assert "best/val_auprc" in page and "Objective 0" not in page
    visit(browser, url + "/trials")
    numbers = [f"Trial {i}" for i in range(served.cfg.study.n_trials)]
    page = wait_for(browser, *numbers, "Complete")
    # the selected trial shows its MLflow run id: the way back to its curves
    assert f"droplab.run_id {served.trials[0].info.run_id}" in page


@pytest.mark.slow
def test_optuna_dashboard_shows_the_note_and_figures(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url = served.urls[ui.DASHBOARD]
    visit(browser, url)
    title = "Best trials and dropout-0 controls: train vs val"
    page = wait_for(browser, title, "Gap after the last epoch against dropout")
    figure = browser.find_elements(By.XPATH, f"//*[name()='text'][contains(., '{title}')]")
    # the curves figure is drawn (plotly SVG) and visible on the study page
    assert figure and figure[0].is_displayed()
    # it holds the best trial's curves and a dropout-0 control's
    assert " p=0.00 " in page and " gap" in page
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", figure[0])
    browser.execute_script("window.scrollBy(0, -120)")  # the figure's title, under the app bar
    time.sleep(1.0)
    shoot(browser, tmp_path, "optuna_dashboard_figures.png")
    visit(browser, url + "/note")
    page = wait_for(browser, "Best configuration", "Gap reduction against dropout 0")
    # the study's note is the report's findings and says where the whole report is
    assert "report.html" in page
    shoot(browser, tmp_path, "optuna_dashboard_note.png")


@pytest.mark.slow
def test_mlflow_parent_run_shows_the_findings(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    mlflow_view(browser, served)
    base = served.urls[ui.MLFLOW].split("#")[0]
    parent = served.parent.info.run_id
    visit(browser, f"{base}#/experiments/{served.experiment_id}/runs/{parent}")
    wait_for(browser, served.parent.info.run_name, "droplab report: study", "Show more")
    open_artifact(browser, "Show more")  # MLflow folds a long description
    page = wait_for(browser, "Gap reduction against dropout 0", "setting or metric")
    # the parent run's description (its run page) is the report's findings, tables included
    assert "Best configuration" in page and "final/gap_loss" in page
    shoot(browser, tmp_path, "mlflow_parent_description.png")


# ---------------------------------------------------------------- serve(): the command


def _serve_script(overrides: list[str], mlflow_port: int, dash_port: int) -> str:
    return (
        "import sys\n"
        "from droplab import interrupts\n"
        "from droplab.config import load_config\n"
        "from droplab.ui import serve\n"
        "interrupts.install()\n"
        f"cfg = load_config(None, {overrides!r})\n"
        f"sys.exit(serve(cfg, '127.0.0.1', {mlflow_port}, {dash_port}))\n"
    )


def _wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = WAIT) -> str:
    """Read the child's stdout until a line holds ``needle``; returns what was read."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if needle in line or (not line and proc.poll() is not None):
            break
    return "".join(seen)


@pytest.mark.slow
def test_ctrl_c_stops_both_servers_and_exits_130(store: Config, tmp_path: Path) -> None:
    overrides = [
        f"paths.runs={store.paths.runs}",
        f"name={store.name}",
        "tracking.uri=http://alice:s3cret@127.0.0.1:1/",
    ]
    dash_port = free_port()
    script = _serve_script(overrides, free_port(), dash_port)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = _wait_line(proc, "Ctrl-C stops")
        # a tracking server is only printed, password masked; the dashboard is started
        assert "http://alice:***@127.0.0.1:1/" in out and "s3cret" not in out
        assert ui.answers(f"http://127.0.0.1:{dash_port}/api/studies")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Ctrl-C: exit 130, the dashboard is gone with it
    assert proc.returncode == 130, out + rest
    assert "stopping optuna-dashboard" in rest
    assert not ui.answers(f"http://127.0.0.1:{dash_port}/api/studies")


# ---------------------------------------------------------------- fast checks, no servers


def test_nothing_to_show_is_bad_input(tmp_path: Path) -> None:
    cfg = study_config(tmp_path)
    # no study and no run yet: one line that says what to run first (exit 2)
    with pytest.raises(ConfigError, match="droplab study"):
        ui.plan(cfg, ui.HOST, free_port(), free_port())


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    cfg = study_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the message names the port and the option that changes it
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*--port"):
            ui.plan(cfg, ui.HOST, port, free_port())
    # the same port for both UIs is refused too
    with pytest.raises(ConfigError, match="must differ"):
        ui.plan(cfg, ui.HOST, 5000, 5000)


@pytest.mark.parametrize(
    ("host", "loopback", "url"),
    [
        ("127.0.0.1", True, "http://127.0.0.1:5000/"),
        ("localhost", True, "http://localhost:5000/"),
        ("::1", True, "http://[::1]:5000/"),
        ("0.0.0.0", False, "http://127.0.0.1:5000/"),
        ("10.1.2.3", False, "http://10.1.2.3:5000/"),
    ],
)
def test_hosts(host: str, loopback: bool, url: str) -> None:
    # only loopback binds stay private; a wildcard bind is browsed on loopback
    assert ui.is_loopback(host) is loopback and ui.base_url(host, 5000) == url


def test_exposed_host_warning() -> None:
    warning = ui.exposure_warning("0.0.0.0")
    # it says why an exposed UI matters and what to do instead
    assert "no authentication" in warning and "ssh -L" in warning


def test_store_urls_stay_out_of_argv(tmp_path: Path) -> None:
    secret = "postgresql://bob:hunter2@db.example/optuna"
    cfg = study_config(tmp_path, f"study.storage={secret}", "tracking.uri=" + secret)
    services = [ui.mlflow_service(cfg, ui.HOST, 5000), ui.dashboard_service(cfg, ui.HOST, 8080)]
    for service in services:
        assert service is not None
        # the password travels in the child's environment, never in its command line
        assert not any("hunter2" in arg for arg in service.argv)
        assert any("hunter2" in value for value in service.env.values())
        # and what is printed is masked
        assert "hunter2" not in service.store and "***" in service.store


def test_odd_states_of_paths_runs_are_one_line_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "optuna.db").write_bytes(b"")  # an empty SQLite file is a valid (empty) database
    (runs / "ui").write_text("not a folder")
    args = ["ui", f"paths.runs={runs}", "--port", str(free_port())]
    args += ["--dashboard-port", str(free_port())]
    # a file where the log folder goes: exit 2, one line naming the folder
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ui" in err[0] and "file is in the way" in err[0], err
    (runs / "ui").unlink()
    (runs / "mlflow.db").write_text("this is not a database")
    # an unreadable MLflow store: exit 2, one line naming the key and the reason
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("droplab: error: tracking.uri=") and "not a database" in err[-1]
    # and no server was started: the log folder holds no server log
    assert not list((runs / "ui").glob("*.log"))
