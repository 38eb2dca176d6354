# Every target makes .venv itself when it is missing or older than pyproject.toml,
# so `make test` and `make bench` work on a fresh clone with nothing installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench bench-models bench-loadgen demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# make bench QUICK=1: a classroom-sized bench (under a minute); make bench FULL=1: more of all.
bench: $(STAMP)
	$(PY) -m loadgen bench $(if $(QUICK),--quick) $(if $(FULL),--full)

bench-models: $(STAMP)
	$(PY) tests/model_figures.py

# The classroom view: the five models live, cpu=2ms then io=5ms, under a minute.
demo: $(STAMP)
	$(PY) -m loadgen demo

bench-loadgen: $(STAMP)
	$(PY) -m loadgen selftest

clean:
	rm -rf $(VENV) build *.egg-info
