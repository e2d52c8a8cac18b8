# Two entry points: `make demo` and `make test`.  Both create (or reuse) .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Real data: $CELLSCREEN_DATA if set, else ../shared/data if present, else the
# user cache (where `cellscreen data fetch` downloads the NIH malaria set).
CELLSCREEN_DATA ?= $(shell test -d ../shared/data && cd ../shared/data && pwd)
export CELLSCREEN_DATA
DEMO := runs/demo

.PHONY: demo test clean-demo

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/cellscreen datasets
	$(BIN)/cellscreen data fetch malaria-nih
	$(BIN)/cellscreen data info --dataset malaria-nih --out $(DEMO)/malaria-info.json --overwrite
	$(BIN)/cellscreen split --dataset malaria-nih --out $(DEMO)/malaria-split.csv --overwrite
	$(BIN)/cellscreen cache --dataset malaria-nih --size 128 --manifest $(DEMO)/malaria-split.csv

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf $(DEMO)
