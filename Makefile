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
	$(BIN)/cellscreen demo --out $(DEMO) --overwrite

# Two test processes on the two cores, one PyTorch/OpenMP thread each (and in every command a test starts):
# two processes of two threads each ran the suite 2.6 times slower on the 2-core machine.
test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

clean-demo:
	rm -rf $(DEMO)
