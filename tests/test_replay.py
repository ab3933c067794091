"""`droplab replay`: a logged run reruns to the same numbers; altered metrics or data do not."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from droplab import metrics, tags
from droplab.cli.summaries import print_replay
from droplab.config import Config, ConfigError, from_dict, tracking_uri
from droplab.replay import EXIT_MATCH, EXIT_MISMATCH, params_tree, replay
from droplab.tracking.connect import make_tracker
from droplab.tracking.provenance import run_params
from droplab.train import train

from .conftest import tiny_config


def _logged_run(tmp_path: Path, *overrides: str) -> tuple[Config, str]:
    cfg = tiny_config(tmp_path, "name=rp", "model.dropout=0.3", *overrides)
    return cfg, train(cfg).run_id


@pytest.mark.slow
def test_replay_matches_then_reports_an_altered_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, run_id = _logged_run(tmp_path)
    uri = tracking_uri(cfg)
    result = replay(run_id, uri)
    # the data digest, every per-epoch history and every summary metric match: exit 0
    assert result.exit_code == EXIT_MATCH
    # (calibration too: a run that logged it has it checked; older runs are checked without it)
    assert [c.name for c in result.checks] == [
        "data digest",
        *metrics.EPOCH_KEYS,
        *metrics.CALIBRATION_KEYS,
        *metrics.SUMMARY_KEYS,
        *metrics.OPTIONAL_SUMMARY_KEYS,
    ]
    assert all(c.ok for c in result.checks)
    client = MlflowClient(tracking_uri=uri)
    client.log_metric(run_id, metrics.BEST_VAL_AUPRC, 0.123)  # the summary now says something else
    client.log_metric(run_id, metrics.GAP_LOSS, 9.9, step=2)  # and epoch 2 holds a second value
    altered = replay(run_id, uri)
    # exactly the altered metrics mismatch, and the exit code is 1
    assert altered.exit_code == EXIT_MISMATCH
    assert {c.name for c in altered.checks if not c.ok} == {
        metrics.BEST_VAL_AUPRC,
        metrics.GAP_LOSS,
    }
    print_replay(altered)
    out = capsys.readouterr().out
    # one line per metric says match or MISMATCH, the altered value is named
    assert out.count("MISMATCH") == 2 and "epoch 2" in out and "0.123" in out


@pytest.mark.slow
def test_changed_data_is_a_mismatch_without_retraining(tmp_path: Path) -> None:
    cfg, run_id = _logged_run(tmp_path)
    uri = tracking_uri(cfg)
    MlflowClient(tracking_uri=uri).set_tag(run_id, tags.DATA_DIGEST, "0" * 64)
    result = replay(run_id, uri)
    # other rows cannot reproduce the numbers: the digest check fails, exit 1, nothing rerun
    assert result.exit_code == EXIT_MISMATCH
    assert [(c.name, c.ok) for c in result.checks] == [("data digest", False)]


def test_params_rebuild_the_logged_config(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model.dropout=[0.1, 0.2]", "train.predict=[[1.0, 2.0]]")
    params = {k: str(v) for k, v in run_params(cfg).items()}
    # the dotted string params (the manifest's fallback) give back the same config
    assert from_dict(params_tree(params)) == cfg


@pytest.mark.slow
def test_replay_refuses_a_missing_store_or_run(tmp_path: Path) -> None:
    # no store at the URI: one line, and no empty database is created
    with pytest.raises(ConfigError, match="no MLflow store"):
        replay("abc", f"sqlite:///{tmp_path}/none.db")
    assert not (tmp_path / "none.db").exists()
    cfg = tiny_config(tmp_path, "name=rp")
    tracker = make_tracker(cfg)
    parent = tracker.start("comparison-rp", "comparison", {}, None)
    tracker.end(parent, tags.FINISHED, tags.COMPLETE)
    # a run that trained nothing cannot be replayed; an unknown id is named
    with pytest.raises(ConfigError, match="trained no model"):
        replay(parent, tracking_uri(cfg))
    with pytest.raises(ConfigError, match="not found"):
        replay("f" * 32, tracking_uri(cfg))


@pytest.mark.slow
def test_a_pcg64_bf16_run_replays_exactly(tmp_path: Path) -> None:
    # the main experiment's settings: PCG64 masks (input and hidden) and bfloat16 products
    cfg, run_id = _logged_run(
        tmp_path,
        "model.dropout_rng=pcg64",
        "model.input_dropout=0.1",
        "train.precision=bf16-mixed",
    )
    result = replay(run_id, tracking_uri(cfg))
    # every per-epoch and summary metric reruns to the logged bits
    assert result.exit_code == EXIT_MATCH and all(c.ok for c in result.checks)
    # and the logged params give back the config, generator included
    params = MlflowClient(tracking_uri=tracking_uri(cfg)).get_run(run_id).data.params
    assert params["model.dropout_rng"] == "pcg64"
