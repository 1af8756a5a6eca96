# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := demo
PYTEST_WORKERS ?= 2

export HF_HUB_OFFLINE := 1

.PHONY: venv test test-slow demo lint clean examples

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-slow: $(STAMP)
	$(PY) -m pytest -q --run-slow -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check scaffolder runtime tests
	$(VENV)/bin/ruff format --check scaffolder runtime tests

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/scaffold new-model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --output $(DEMO_DIR)
	cd $(DEMO_DIR) && ../$(PY) -m pytest -q tinyllama_1_1b_chat_v1_0
	@echo
	@echo "Generated package: $(DEMO_DIR)/tinyllama_1_1b_chat_v1_0"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

# Re-render the checked-in examples (tests fail when they drift from the generator).
examples: $(STAMP)
	HF_HUB_CACHE=$$(mktemp -d) $(VENV)/bin/scaffold new-model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --output generated_examples --force
