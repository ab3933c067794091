#!/usr/bin/env bash
# droplab study on N Slurm tasks at once: a job array, every task running the same command.
#
#   mkdir -p logs && sbatch deploy/slurm-array.sh  # 8 tasks (Slurm opens logs/ before the script runs)
#   sbatch --array=0-31%16 deploy/slurm-array.sh   # 32 tasks, 16 at a time
#   squeue --me; tail -f logs/droplab-*.out
#
# Before the first array of a study: the databases, Optuna's tables, the MLflow server and the
# experiment exist (docs/scaling_out.md, section 1). The PostgreSQL password is read from
# ~/.pgpass (chmod 600: "db.internal:5432:droplab_optuna:droplab:<password>"), never from here.
#SBATCH --job-name=droplab-fraud-dropout-width
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=04:00:00
#SBATCH --output=logs/droplab-%A_%a.out
#SBATCH --signal=TERM@60          # SIGTERM a minute before the time limit: the trial fails cleanly
set -euo pipefail

cd "${SLURM_SUBMIT_DIR}"
source .venv/bin/activate

export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK}"
# Node-local scratch for the task's copy of the report; the study and runs live on the servers.
RUNS="${TMPDIR:-/tmp}/droplab-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}"

# srun forwards the --signal above to droplab; exec keeps no shell in between.
exec srun --kill-on-bad-exit=1 droplab study experiments/fraud_dropout_width.yaml \
    study.storage=postgresql://droplab@db.internal:5432/droplab_optuna \
    tracking.uri=http://mlflow.internal:5000 \
    study.n_trials=200 \
    "train.threads=${SLURM_CPUS_PER_TASK}" \
    "paths.runs=${RUNS}"
