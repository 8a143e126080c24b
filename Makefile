# The two commands a user needs: `make demo` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
BACKEND ?= local
PYTEST_ARGS ?=

.PHONY: demo test bench manifests venv sysdeps clean

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

venv: $(VENV)/.installed

sysdeps:
	@scripts/system-deps.sh

demo: venv sysdeps
	$(PY) -m localmesh demo --backend $(BACKEND)

test: venv sysdeps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv sysdeps
	$(PY) -m bench

manifests: venv
	$(PY) -m topology.render manifests

clean:
	rm -rf $(VENV) .pytest_cache run
