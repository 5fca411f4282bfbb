# Two set-up commands: `make demo` (install, then the offline demo study) and `make test`
# (install, then the test suite). Both create .venv if absent and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow smoke install clean
install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m study run demo

smoke: $(STAMP)
	$(PY) -m study run demo --smoke

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

clean:
	rm -rf ray_results mlflow.db cache .pytest_cache
