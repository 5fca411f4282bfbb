# Two set-up commands: `make demo` (install, then the offline demo study) and `make test`
# (install, then the test suite). Both create .venv if absent and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-scale demo-petl analysis test test-slow test-cluster smoke bench install clean
install: $(STAMP)

# uv installs what pip would (same pins, pip's configured indexes), faster: docs/demo.md times both
$(STAMP): requirements.txt pyproject.toml scripts/uv_install_flags.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet uv==0.13.9
	$(VENV)/bin/uv pip install --python $(PY) --quiet --compile-bytecode \
		$$($(PY) scripts/uv_install_flags.py) -r requirements.txt -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m study run demo

demo-scale: $(STAMP)
	$(PY) -m study run demo-scale

demo-petl: $(STAMP)
	$(PY) -m study run demo-petl
	$(PY) -m analysis efficiency demo-petl

analysis: $(STAMP)
	for verb in table wins fid quadrants curves efficiency attributions; do \
		$(PY) -m analysis $$verb demo || exit 1; done
	$(PY) -m analysis advise demo --task photos
	@# Figure 4 and Tables 5/6 need `make demo-scale` first; without it this says so
	-$(PY) -m analysis capacity demo-scale

smoke: $(STAMP)
	$(PY) -m study run demo --smoke

bench: $(STAMP)
	$(PY) -m bench

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# the cluster path and its faults: a fake autoscaling Ray cluster, MLflow over PostgreSQL and
# its UI in headless Chromium (both installed from Debian's packages when absent), a killed
# worker node, an MLflow outage, a full disk; needs root for the tmpfs it fills
test-cluster: $(STAMP)
	tests/install_debian_packages.sh
	$(PY) -m pytest -m cluster

clean:
	rm -rf ray_results mlflow.db cache analysis_out mlartifacts .pytest_cache
