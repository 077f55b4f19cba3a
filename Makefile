# Two commands on a fresh machine: `make run` and `make test`. Each creates .venv when missing and
# installs kd-edge with its dependencies; a stamp keyed on the hash of setup.cfg skips a repeated install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kd-edge-installed-$(shell (cat setup.cfg pyproject.toml | sha256sum 2>/dev/null || shasum -a 256 setup.cfg) | cut -c1-16)
OUT    ?= runs/make-run
PYTEST_ARGS ?=
# Test processes (pytest-xdist): 2 fits the 2-core CI host; each test file runs whole in one process, so its
# module fixtures are built once. PYTEST_WORKERS=0 runs the suite in this process, one test after another.
PYTEST_WORKERS ?= 2

.PHONY: run test install clean help

help:
	@echo "make run   - the whole job on the embedded default model (outputs under $(OUT))"
	@echo "make test  - the test suite"

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.kd-edge-installed-*
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kd-edge run --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs build *.egg-info
