# Two commands do all set-up on a fresh machine:
#   make bench   - install into .venv, then benchmark BM25, the bundled static-ko and their fusion on the bundled sample
#   make test    - install into .venv (with test extras) and chromium (apt-get), then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: install browser bench test finetune-demo static-ko clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch (the pinned version); see README for the CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,scale,mteb,openvino]'
	# Byte-compile the sources, as pip does for a regular install (an editable one does not): `koembed --help`
	# then starts without compiling ~50 modules, also where PYTHONDONTWRITEBYTECODE is set.
	$(PY) -m compileall -q src
	touch $@

install: $(VENV)/.installed

bench: install
	$(VENV)/bin/koembed bench --out $(OUT)/results.json --run-out $(OUT)/runs --plot $(OUT)/bench.png

# The playground's browser test drives Debian's chromium (and its screenshots want a Korean font); install them
# where they are missing and apt-get can (root).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -d /usr/share/fonts/truetype/nanum ]; \
	then :; elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver fonts-nanum; \
	else echo "chromium/chromium-driver missing and apt-get unavailable (or not root): the browser test will skip" \
		"(and fail under CI=true)"; fi

test: install browser
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Main job, part two: train a static model on all shared pairs that are not held out and fine-tune the bundled
# MiniLM on Korean pairs (needs ../shared/data); before/after tables.
finetune-demo: install
	rm -rf out/static-ko-shared
	$(PY) bench/cpu_finetune.py --out $(OUT)/cpu_finetune.json

# Regenerate the bundled Korean static model src/koembed/models/static_ko (CC BY-SA 4.0 sets of ../shared/data only)
# and its model card; deterministic.
static-ko: install
	rm -rf $(OUT)/static-ko
	$(VENV)/bin/koembed train configs/static-ko.yaml --set output_dir=$(OUT)/static-ko -q
	$(PY) bench/static_ko.py --model $(OUT)/static-ko/final --out $(OUT)/static_ko.json

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
