"""``train.precision``: bfloat16 training forward, float32 everywhere else; recorded, replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from droplab import metrics
from droplab.config import ConfigError, config_hash, load_config, tracking_uri
from droplab.fit.stack.grouping import can_stack
from droplab.fit.stack.members import fit_members
from droplab.fit.trainer import AUTO_BF16_MIN_WIDTH, fit, native_cpu_bf16, resolve_precision
from droplab.replay import EXIT_MATCH, replay
from droplab.tracking.connect import make_tracker
from droplab.train import train

from .conftest import tiny_config


def test_the_key_takes_32_as_written_in_yaml_and_refuses_others(tmp_path: Path) -> None:
    # YAML reads `32` as a number: it is the same setting as the string, and the same hash
    as_int = tiny_config(tmp_path, "train.precision=32")
    assert as_int.train.precision == "32"
    assert config_hash(as_int) == config_hash(tiny_config(tmp_path))
    assert config_hash(tiny_config(tmp_path, "train.precision=bf16-mixed")) != config_hash(as_int)
    with pytest.raises(ConfigError, match="train.precision"):
        tiny_config(tmp_path, "train.precision=16")


def test_bf16_trains_in_bfloat16_and_evaluates_in_float32(tmp_path: Path) -> None:
    plain = fit(tiny_config(tmp_path, "model.dropout=0.3"))
    bf16 = fit(tiny_config(tmp_path, "model.dropout=0.3", "train.precision=bf16-mixed"))
    again = fit(tiny_config(tmp_path, "model.dropout=0.3", "train.precision=bf16-mixed"))
    assert (plain.precision, bf16.precision) == ("32", "bf16-mixed")
    # the same config, seed and precision: the same numbers, bit for bit
    assert bf16.history == again.history
    # bfloat16 products change the trained weights (so autocast did act), a little
    losses = [
        (h[metrics.TRAIN_LOSS], b[metrics.TRAIN_LOSS])
        for h, b in zip(plain.history, bf16.history, strict=True)
    ]
    assert all(a != b and abs(a - b) < 0.05 for a, b in losses)
    # the weights and the eval pass stay float32
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())


def test_auto_is_bf16_only_where_it_pays(tmp_path: Path) -> None:
    narrow = tiny_config(tmp_path, "train.precision=auto", "train.device=cpu")
    wide = tiny_config(
        tmp_path, "train.precision=auto", "train.device=cpu", f"model.width={AUTO_BF16_MIN_WIDTH}"
    )
    assert resolve_precision(narrow) == "32"
    assert resolve_precision(wide) == ("bf16-mixed" if native_cpu_bf16() else "32")
    assert resolve_precision(tiny_config(tmp_path, "train.precision=bf16-mixed")) == "bf16-mixed"


def test_bf16_members_train_alone_each_equal_to_its_own_fit(tmp_path: Path) -> None:
    cfgs = [tiny_config(tmp_path, f"seed={s}", "train.precision=bf16-mixed") for s in (0, 1)]
    # the stacked kernels are probed for float32 only: bfloat16 members are not stacked
    assert not can_stack(cfgs)
    assert can_stack(
        [
            c.model_copy(update={"train": c.train.model_copy(update={"precision": "32"})})
            for c in cfgs
        ]
    )
    alone = fit_members(cfgs[:1])
    assert alone[0].history == fit(cfgs[0]).history and alone[0].precision == "bf16-mixed"


@pytest.mark.slow
def test_the_manifest_records_the_precision_and_replay_reruns_it(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "name=prec", "model.dropout=0.3", "train.precision=bf16-mixed")
    run_id = train(cfg).run_id
    store = make_tracker(cfg)
    path = store.download(run_id, "manifest.json", tmp_path / "dl")
    assert json.loads(Path(path).read_text())["precision"] == "bf16-mixed"
    result = replay(run_id, tracking_uri(cfg))
    assert result.exit_code == EXIT_MATCH, [c for c in result.checks if not c.ok]


def test_a_bad_precision_on_the_command_line_is_one_line_exit_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"paths.runs={tmp_path}", "train.precision=fp8"])
    assert "train.precision" in str(err.value) and "\n" not in str(err.value)
