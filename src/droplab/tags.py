"""Every persisted string droplab writes and reads back: MLflow tags, run kinds and states,
Optuna user attributes, artifact names. Resuming a study or a comparison finds its runs by
these, so each is spelled once, here (metric names live in :mod:`droplab.metrics`)."""

# MLflow run status and droplab.state values (a trial's state mirrors Optuna's)
RUNNING = "RUNNING"  # an MLflow run status and an Optuna trial state
WAITING = "WAITING"  # an Optuna trial state (enqueued, not started)
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
COMPLETE = "COMPLETE"
PRUNED = "PRUNED"
FAIL = "FAIL"

# Run kinds (the value of the KIND tag)
KIND_TRAIN = "train"
KIND_STUDY = "study"
KIND_TRIAL = "trial"
KIND_SEED = "seed"
KIND_COMPARISON = "comparison"
KIND_CELL = "cell"

# Tags on every run that trained a model
KIND = "droplab.kind"
STATE = "droplab.state"
REASON = "droplab.failure"  # why a run FAILED or was KILLED
CONFIG_HASH = "droplab.config_hash"
DATA_DIGEST = "droplab.data_digest"
DATA_POSITIVE = "droplab.data.positive"  # the binary text label taken as 1 (issue 15)
GIT_COMMIT = "droplab.git_commit"
GIT_DIRTY = "droplab.git_dirty"
PARENT = "mlflow.parentRunId"  # MLflow's own nesting tag
DATA_SOURCE = "droplab.source"  # the source of a run's dataset input
FEATURES = "droplab.features"  # the encoded feature names of a dataset input
RUN_NOTE = "mlflow.note.content"  # a run's description on its MLflow page (Markdown)

# MLflow experiment tag: model development, so the UI opens on the run list, not GenAI
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"

# Tags of studies and trials (Optuna's names where MLflow users expect them)
STUDY_NAME_TAG = "optuna.study_name"
TRIAL_NUMBER_TAG = "optuna.trial_number"
STORAGE_TAG = "droplab.storage"
BEST_PREFIX = "best."  # best.<param> tags on a study's parent run

# Optuna study user attributes
PARENT_RUN = "droplab.parent_run_id"
SPACE = "droplab.space"
OBJECTIVES = "droplab.objectives"
BASELINES_QUEUED = "droplab.baselines_enqueued"

# Optuna trial user attributes
BASELINE = "droplab.baseline"  # a dropout-0 control (trial attribute and cell/seed run tag)
SUMMARY = "droplab.summary"
MODEL = "droplab.model_artifact"
RUN_ID = "droplab.run_id"
FAIL_REASON = "droplab.fail_reason"  # why a trial failed
SEED_VALUES = "droplab.seed_values"  # study.seeds: {seed: [objective values]} of a trial
SEED_SUMMARIES = "droplab.seed_summaries"  # study.seeds: {seed: summary metrics} of a trial
HOST = "droplab.host"  # which host and process run a trial,
PID = "droplab.pid"  # so a later start can tell whether it died

# Tags of comparisons, cells and seed runs
COMPARISON_ID = "droplab.comparison_id"
CELL_KEY = "droplab.cell_key"
SEED = "droplab.seed"
SEED_RUNS = "droplab.seed_runs"  # also a trial user attribute: {seed: run id}
ARM = "droplab.arm"  # the named setting (compare.arms) of a cell and its seed runs
STUDY_RUN = "droplab.study_run_id"  # on a study's seed runs: the study's parent run
VECTORIZED = "droplab.vectorized"  # "true" on a seed run trained in a stack
STACK_SIZE = "droplab.stack_size"  # how many members that stack trained together

# Artifact file names
MANIFEST = "manifest.json"
MODEL_FILE = "model_state.pt"
