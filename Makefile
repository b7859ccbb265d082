# Two commands do all set-up on a fresh machine:
#   make bench   - install into .venv, then benchmark bm25 and the bundled MiniLM on the bundled Korean sample
#   make test    - install into .venv (with test extras), then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: install bench test finetune-demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch (the pinned version); see README for the CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,scale]'
	# Byte-compile the sources, as pip does for a regular install (an editable one does not): `koembed --help`
	# then starts without compiling ~50 modules, also where PYTHONDONTWRITEBYTECODE is set.
	$(PY) -m compileall -q src
	touch $@

install: $(VENV)/.installed

bench: install
	$(VENV)/bin/koembed bench --out $(OUT)/results.json --run-out $(OUT)/runs --plot $(OUT)/bench.png

test: install
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Main job, part two: fine-tune the bundled MiniLM on Korean pairs (needs ../shared/data), before/after table.
finetune-demo: install
	$(PY) bench/cpu_finetune.py --out $(OUT)/cpu_finetune.json

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
