"""Data: synthetic fraud generator, CSV/Parquet/sklearn loaders, splits, scaling and batches.

Nothing here knows about Lightning, Optuna or MLflow. Import from the modules themselves
(``droplab.data.splits.prepare``): the package imports nothing, so catching a
``droplab.data.errors.DataError`` costs no numpy, pandas or torch import.
"""
