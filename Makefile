PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install demo test lint bench

$(BIN)/orchestrator: pyproject.toml examples/webchat_channel/pyproject.toml examples/custom_connector/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# the example plugins, installed as a developer following docs/EXTENDING.md would
	$(BIN)/pip install -q -e examples/webchat_channel -e examples/custom_connector
	touch $@

install: $(BIN)/orchestrator

demo: install
	printf '1\nAlex Morgan\ncleaning\ntomorrow at 10am\n1\n' | $(BIN)/orchestrator chat flows/dental_booking.yaml --channel sms --now 2026-11-25T12:00-05:00

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/bench_engine.py
