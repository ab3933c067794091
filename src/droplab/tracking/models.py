"""The best model as an MLflow 3 LoggedModel, linked to the run that trained it.

``mlflow.pytorch.log_model`` alone would put the model in the *active* experiment and needs
``start_run``, which reopens a finished run and ends it again. Creating the LoggedModel in the
run's own experiment first, then logging into it by ``run_id``, keeps the run as it was and
links the run's params and step-0 (summary) metrics to the model: ``search_logged_models``
on the experiment finds it with the numbers it was chosen for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from droplab.fit.model import MLP

_URI_VARIABLE = "MLFLOW_TRACKING_URI"


def log_logged_model(
    client: Any,
    uri: str,
    run_id: str,
    model: MLP,
    example: torch.Tensor,
    shown_on: Sequence[str] = (),
) -> None:
    """An MLflow 3 LoggedModel whose source is ``run_id``: its params and its step-0
    (summary) metrics are linked to the model; ``shown_on`` runs list it as an output too.
    The run keeps its status: no ``start_run``, which would reopen (and then end) it."""
    import mlflow
    import mlflow.pytorch
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    with torch.no_grad():
        logits = model(example).numpy()
    signature = infer_signature(example.numpy(), logits)
    # MLflow's fluent API reads a global URI that it also exports as MLFLOW_TRACKING_URI,
    # droplab's default store: set it for this call only.
    previous = os.environ.get(_URI_VARIABLE)
    mlflow.set_tracking_uri(uri)
    try:
        # Created here, in the run's experiment (MLflow would put it in the active one).
        run = client.get_run(run_id)
        logged = client.create_logged_model(
            run.info.experiment_id,
            name="model",
            source_run_id=run_id,
            params=dict(run.data.params),
            model_type="pytorch",
        )
        # Naming the requirement skips MLflow's slow inference of the environment.
        mlflow.pytorch.log_model(
            model,
            name="model",
            run_id=run_id,
            model_id=logged.model_id,
            signature=signature,
            input_example=example.numpy(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: unset it again
    for other in shown_on:
        client.log_outputs(other, [LoggedModelOutput(logged.model_id, step=0)])
