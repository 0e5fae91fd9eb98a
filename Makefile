# dnn — set-up contract. Every target works on a fresh clone with nothing installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install test test-slow demo experiments bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q

demo: install
	$(VENV)/bin/dnn demo

# Every experiment at its full budget and the published protocol, one after the other, each on one thread but
# rnn-vs-transformer (every core: give it a quiet machine); the expected total is in experiments/README.md (under
# 3 hours on a 2-core CPU). Progress lines give the time left; a killed run keeps its finished seeds and resumes.
# Not part of `make test`, which runs their --quick versions.
experiments: install
	$(VENV)/bin/dnn experiment all

# dnn against plain PyTorch scripts and Keras 3 (when installed: pip install 'dnn[bench]'), ratios + load average;
# writes benchmarks/RESULTS.md (a few minutes on 2 cores)
bench: install
	$(PY) benchmarks/run_all.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
