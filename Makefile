# Every target makes .venv itself when it is missing or older than pyproject.toml,
# so `make test` and `make bench` work on a fresh clone with nothing installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench bench-loadgen clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) tests/model_figures.py

bench-loadgen: $(STAMP)
	$(PY) -m loadgen selftest

clean:
	rm -rf $(VENV) build *.egg-info
