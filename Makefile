# canvas-rlhf: every target a user or CI needs. `make help` lists them.
PYTHON ?= python3.11
VENV ?= .venv
LS_VENV ?= .venv-labelstudio
PY := $(VENV)/bin/python
OUT ?= demo-output
LS_TEMPLATE := $(LS_VENV)/canvas-data-template/canvas-template.json

.PHONY: help setup browser prism presets test lint bench demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(VENV)/.installed $(LS_VENV)/.installed $(LS_TEMPLATE) browser prism presets  ## create .venv (project + dev tools), .venv-labelstudio (+ a pre-migrated data dir), headless Chromium, Beam's Prism runner, the model presets (idempotent)

# torch/torchvision first, pinned: those wheels lie on the build machines' disk; any other release downloads GBs.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Label Studio lives in its own venv: its pins (Django, numpy<2.3 via opencv) clash with ours.
$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q 'label-studio==1.23.*'
	touch $@

# Label Studio migrated once into a data-dir template (~30 s); every server start copies it (seconds).
# Rebuilt only when Label Studio is reinstalled. `canvas label server start` builds it lazily if missing.
$(LS_TEMPLATE): $(LS_VENV)/.installed $(VENV)/.installed
	$(PY) -m canvas.labeling.server template

# Debian's Chromium renders the demo report in a test (headless). Installed only when missing.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Beam's Prism runner (a Go job server) at the installed apache-beam's exact version, built from the Go
# module proxy into the ignored .cache/bin/ (~2.5 CPU-minutes once; Beam would otherwise download it from
# GitHub releases, which these machines cannot reach). Rebuilt when apache-beam changes.
PRISM := .cache/bin/prism
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
prism: $(PRISM)  ## build Beam's Prism runner into .cache/bin/prism
$(PRISM): $(VENV)/.installed
	mkdir -p $(dir $@)
	GOBIN=$(abspath $(dir $@)) $(GO) install github.com/apache/beam/sdks/v2/go/cmd/prism@v$$($(PY) -c 'import apache_beam; print(apache_beam.__version__)')
	touch $@

# The embedded model presets, built into $CANVAS_HOME as a download of weights would land there (tiny-photo:
# ~2.5 min on 2 cores). Skipped when built under the current build key; the test session copies them.
presets: $(VENV)/.installed  ## build the tiny model presets into CANVAS_HOME (skipped when current)
	$(PY) -m canvas models init --preset tiny --rebuild false
	$(PY) -m canvas models init --preset tiny-photo --rebuild false

# Two workers, a test file per worker at a time, in conftest's order (longest first): xdist's default reorder
# by test count put the one-test DDPO learning file last, so it ran alone at the end (CI: 25.8 min).
test:  ## run the test suite (starts its own Label Studio server on 127.0.0.1)
	$(PY) -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder

lint:  ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench:  ## run the benchmarks in bench/ (each prints ratios against a baseline measured in the same run)
	@set -e; for b in bench/bench_*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(PY) $$b; done

demo:  ## run the main job on the tiny presets and sample data into $(OUT)/
	$(VENV)/bin/canvas demo --output $(OUT)

clean:  ## remove build and test leftovers (not the venvs)
	rm -rf .pytest_cache .ruff_cache $(OUT) *.egg-info
