"""``droplab train``: one fit in one MLflow run of kind ``train``."""

from __future__ import annotations

from droplab import tags
from droplab.config.schema import Config, ConfigError
from droplab.data.splits import prepare
from droplab.fit.trainer import check_monitor
from droplab.progress import epoch_bar
from droplab.tracking.connect import make_tracker
from droplab.tracking.runs import RunSpec, TrackedFit, run_fit


def train(cfg: Config, progress: bool = False) -> TrackedFit:
    """``droplab train``: one run of kind ``train`` in the experiment's MLflow store."""
    data = prepare(cfg.data, cfg.seed)  # bad data stops here, before any store is created
    check_monitor(cfg, data)
    for row in cfg.train.predict:
        if len(row) != data.n_features:
            raise ConfigError(
                f"train.predict row {list(row)} has {len(row)} values; the data has "
                f"{data.n_features} features ({', '.join(data.feature_names[:5])}...)"
            )
    tracker = make_tracker(cfg)
    hooks = [epoch_bar(cfg.train.epochs, cfg.name)] if progress else []
    spec = RunSpec(tags.KIND_TRAIN, f"train-{cfg.name}", log_model=cfg.tracking.log_model)
    return run_fit(cfg, tracker, spec, hooks=hooks, data=data)
