# tlsweep: every target sets itself up; `make demo` and `make test` work on a fresh clone, offline.
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Hugging Face hub look-ups retry for a minute offline: use the local cache only unless told otherwise.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1
PIPQ := 2>&1 | { grep -v -e "WARNING: Location" -e "BuildBackendWarning" || true; }

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes; torch/torchvision pins resolve from local wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip $(PIPQ)
	$(PY) -m pip install --quiet -e '.[dev]' $(PIPQ)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/tlsweep demo

test: setup
	$(PY) -m pytest -q --durations=20 -m "not slow" tests

# the longer fault tests (driver kills at five points and at random moments, trial faults): .ci/run runs them too
test-slow: setup
	$(PY) -m pytest -q --durations=10 -m slow tests

# bench/peers.py (the quickstart as plain Ray Tune, tuned Ray Tune, Optuna and tlsweep, 3 repeats) is in this loop
bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache
