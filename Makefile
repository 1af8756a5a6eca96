# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := demo
PYTEST_WORKERS ?= 2

export HF_HUB_OFFLINE := 1

.PHONY: venv test test-slow demo lint clean examples bench

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	@# torchtitan 0.3.0 for tests/test_torchtitan.py, keeping torch (its tests skip without it).
	-bash bench/setup_torchtitan.sh --into $(VENV)
	touch $(STAMP)

test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-slow: $(STAMP)
	$(PY) -m pytest -q --run-slow -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check scaffolder runtime tests bench
	$(VENV)/bin/ruff format --check scaffolder runtime tests bench

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/scaffold new-model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --output $(DEMO_DIR)
	cd $(DEMO_DIR) && ../$(PY) -m pytest -q tinyllama_1_1b_chat_v1_0
	cd $(DEMO_DIR) && ../$(VENV)/bin/scaffold train tinyllama_1_1b_chat_v1_0 --nproc 2 -- \
		--training.steps 6 --checkpoint.enable true --checkpoint.last_save_in_hf true
	@echo
	@echo "Generated package:   $(DEMO_DIR)/tinyllama_1_1b_chat_v1_0 (README.md inside)"
	@echo "Train configs:       $(DEMO_DIR)/tinyllama_1_1b_chat_v1_0/train_configs/"
	@echo "Megatron YAML:       $(DEMO_DIR)/tinyllama_1_1b_chat_v1_0/megatron/"
	@echo "Training metrics:    $(DEMO_DIR)/outputs/tinyllama_1_1b_chat_v1_0_debug/metrics.jsonl"
	@echo "DCP checkpoint:      $(DEMO_DIR)/outputs/tinyllama_1_1b_chat_v1_0_debug/checkpoint/"
	@echo "HF export:           $(DEMO_DIR)/outputs/tinyllama_1_1b_chat_v1_0_debug/hf/"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

# Re-render the checked-in examples, one package per family group (docs/families.md): TinyLlama
# from the bundled snapshot, the others from the hub-shaped configs in tests/configs/ (recorded
# relative to the package, so `scaffold regenerate --check generated_examples/<name>` works in any
# clone). Tests fail when they drift from the generator.
EXAMPLES := qwen2:qwen2_5_0_5b qwen3:qwen3_0_6b gemma2:gemma2_9b phi3:phi_3_5_mini_instruct \
	gpt_neox:pythia_160m gpt2:gpt2 mixtral:mixtral_8x7b qwen3_moe:qwen3_30b_a3b \
	deepseek_v3:deepseek_v3 \
	gpt_oss:gpt_oss_20b
examples: $(STAMP)
	HF_HUB_CACHE=$$(mktemp -d) $(VENV)/bin/scaffold new-model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --output generated_examples --force --no-verify
	@for example in $(EXAMPLES); do \
		$(VENV)/bin/scaffold new-model tests/configs/$${example%%:*}.json --name $${example##*:} \
			--output generated_examples --force --no-verify || exit 1; \
	done

# Benchmarks (not part of `make test`; about 10 minutes): rewrites the generated block of
# docs/benchmarks.md. torchtitan, an anchor only, goes into its own venv (bench/setup_torchtitan.sh);
# if that fails the torchtitan column is reported as skipped.
bench: $(STAMP)
	-bash bench/setup_torchtitan.sh
	$(PY) -m bench
