# `make test` and `make demo` are the whole set-up: they create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test,web]'
	# compile the batch rankers' loops into ranking/__pycache__ once (seconds), not in a worker's first model load
	$(BIN)/python -c 'from ranking import kernels; kernels.warm_up()'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25

demo: $(STAMP)
	$(BIN)/recsys demo --seconds 60

bench: $(STAMP)
	$(BIN)/python benchmarks/als_bench.py
	$(BIN)/python benchmarks/realtime_bench.py

clean:
	rm -rf $(VENV) data build *.egg-info
