# droplab: the two commands of the README.
#   make demo   set up and run the main job (Optuna study + report) on the embedded default stores
#   make test   set up and run lint, types and the whole test suite
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
EXP     ?= experiments/fraud_dropout_width.yaml

.PHONY: setup demo test lint bench train clean

$(BIN)/droplab: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: takes the CPU wheel; an unpinned torch would pull the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/droplab

setup: $(BIN)/droplab

demo: setup
	$(BIN)/droplab study $(EXP)
	$(BIN)/droplab report $(EXP)

train: setup
	$(BIN)/droplab train experiments/fraud_baseline.yaml

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=15  # the slowest tests, to keep the suite under 10 min

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
