"""Data: synthetic fraud generator, CSV/Parquet/sklearn loaders, splits, scaling and batches.

Nothing here knows about Lightning, Optuna or MLflow.
"""

from __future__ import annotations

from droplab.data.batches import Batches
from droplab.data.sources import DataError, Table, load_table, table_digest, table_from_frame
from droplab.data.splits import (
    Dataset,
    dataset_from_table,
    fit_scaler,
    prepare,
    split_indices,
    subsample,
)
from droplab.data.synthetic import export_synthetic, synthesize

__all__ = [
    "Batches",
    "DataError",
    "Dataset",
    "Table",
    "dataset_from_table",
    "export_synthetic",
    "fit_scaler",
    "load_table",
    "prepare",
    "split_indices",
    "subsample",
    "synthesize",
    "table_digest",
    "table_from_frame",
]
