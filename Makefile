# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install lstm-infer with the extras they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench compile clean

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed-dev
	$(PY) examples/demo.py

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q

bench: $(VENV)/.installed-dev
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.compression

compile: $(VENV)/.installed-dev
	$(VENV)/bin/lstm-infer compile

clean:
	rm -rf $(VENV) build *.egg-info
