# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# torch goes in first, pinned, so nothing later can pull a CUDA build; constraints.txt keeps it there.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"
	$(PIP) install "torch==2.13.0"
	$(PIP) install -c constraints.txt -e ".[dev,bench]"
	$(PIP) install -c constraints.txt --no-deps "obp==0.4.1"
	$(PY) -c "import torch, liverec; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	# headless Chromium for the browser tests (/docs renders offline; /dashboard, driven by Playwright
	# from the dev extra, which never downloads a browser of its own): Debian's package
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/liverec demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/serve.py

clean:
	rm -rf $(VENV) liverec-data .pytest_cache .mypy_cache .ruff_cache
