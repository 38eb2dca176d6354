# Every target makes .venv itself when it is missing or older than pyproject.toml,
# so `make test` and `make bench` work on a fresh clone with nothing installed.
# .venv is built from the newest CPython 3.12+ with a GIL found on PATH or in pyenv (3.12 gave
# each sub-interpreter its own GIL), else from python3; `make PYTHON=/path/to/python3` chooses
# another (a .venv from another interpreter is rebuilt). The generator and every server then
# run on that one interpreter, so every model does the same work at the same speed; `--python`
# runs the servers on another.
PYTHON ?= $(shell python3 loadgen/harness/pythons.py 2>/dev/null || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# A .venv built from another interpreter than the one chosen (an older make, another PYTHON=)
# is rebuilt, not kept: venv over an existing one can leave its links on the old interpreter.
WANTED := $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)
BUILT := $(realpath $(PY))
ifneq ($(WANTED),)
ifneq ($(BUILT),$(WANTED))
.PHONY: $(INSTALLED)
endif
endif

.PHONY: test test-quick lint pythons bench bench-models bench-loadgen bench-stop bench-soak \
	bench-lossy bench-interop bench-mixed demo clean

$(INSTALLED): pyproject.toml
	@echo "building $(VENV) with $(PYTHON)"
	@# nftables makes the lossy link of the network-namespace tests; without root or the
	@# package registry they skip, saying why.
	@command -v nft >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables) \
		>/dev/null 2>&1 || echo "nftables could not be installed: the lossy-link tests will skip"
	@# sockperf (Mellanox's C++ client and server) cross-checks our generator and servers;
	@# without root or the package registry its tests skip, saying why.
	@command -v sockperf >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sockperf) \
		>/dev/null 2>&1 || echo "sockperf could not be installed: the sockperf tests will skip"
	@# Debian's chromium, headless, opens report.html in tests/test_browser.py and draws it for
	@# `python -m loadgen screenshot`; without root or the package registry that test skips,
	@# saying why.
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		>/dev/null 2>&1 || echo "chromium could not be installed: the browser test will skip"
	@[ -z "$(BUILT)" ] || [ -z "$(WANTED)" ] || [ "$(BUILT)" = "$(WANTED)" ] || \
		{ echo "$(VENV) was built with $(BUILT), not $(WANTED): rebuilding it"; rm -rf $(VENV); }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,distributed]'
	touch $(INSTALLED)

# Every CPython 3.11+ found here or provided, one --python path per line: each found gets a venv
# with the models' packages; as root on Debian, 3.14 and 3.15 come from a Debian sid chroot.
# Made once, kept in ~/.cache/udp-concurrency-lab (outside the project); what is missing says why.
pythons: $(INSTALLED)
	@$(PY) -m loadgen pythons

# The whole suite, the server conformance suite under every Python `make pythons` provides
# included (tests/test_conformance.py; a version it could not provide skips with the reason).
test: $(INSTALLED)
	@$(PY) -m loadgen pythons >/dev/null || echo "make pythons failed: other Pythons' tests skip"
	$(PY) -m pytest

# The quick loop while changing code: every test that takes under a second (no server under
# load, no bench), in seconds. make test runs them all.
test-quick: $(INSTALLED)
	$(PY) -m pytest -m "not slow"

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# make bench QUICK=1: a classroom-sized bench (about 90 s); make bench FULL=1: more of all.
bench: $(INSTALLED)
	$(PY) -m loadgen bench $(if $(QUICK),--quick) $(if $(FULL),--full)

bench-models: $(INSTALLED)
	$(PY) -m loadgen models

# The classroom view: the models live, cpu=2ms then io=5ms, about a minute.
demo: $(INSTALLED)
	$(PY) -m loadgen demo

# One slow request among fast ones: each model's fast p99 alone and beside cpu=20ms, and threads
# at several GIL switch intervals; mixed.json and mixed.png in results/latest (about 6 minutes).
bench-mixed: $(INSTALLED)
	$(PY) -m loadgen mixed

# Start and stop every model 20 times, half of them during a flood: clean, quick, nothing left.
bench-stop: $(INSTALLED)
	$(PY) -m loadgen stops

# Overload each model at twice its capacity, then let off: memory, losses, kernel drops, recovery.
bench-soak: $(INSTALLED)
	$(PY) -m loadgen soak

# Every model on a test host of our own behind a lossy, then a narrow link (root, namespaces).
bench-lossy: $(INSTALLED)
	$(PY) -m loadgen lossy

# Our generator against sockperf's C++ client, on our blocking server and on sockperf's own;
# then sockperf ping-pong against every model (needs the sockperf binary).
bench-interop: $(INSTALLED)
	$(PY) -m loadgen interop

bench-loadgen: $(INSTALLED)
	$(PY) -m loadgen selftest

clean:
	rm -rf $(VENV) build *.egg-info
