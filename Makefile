# Two commands do all set-up on a fresh machine:
#   make bench   - install into .venv, then benchmark phrase-aware BM25 (MeCab-ko and Kiwi), BM25 and the bundled
#                  static-ko on the bundled sample (README, docs/install.md)
#   make test    - install into .venv (with test extras) and, where missing and root, chromium, chromium-driver and
#                  fonts-nanum with apt-get (it prints what it installs and upgrades first; NO_APT=1 skips), lint
#                  (ruff, mypy), then run the whole test suite
#   make test-quick - install and lint as make test does, then only the tests not marked slow (`-m 'not slow'`,
#                  aim: under 3 minutes); no apt-get, no browser (the browser tests are all marked slow)
#   make peers   - (benchmark only) make nori, Java + the Anserini jar, then koembed vs Lucene BM25 (nori and CJK
#                  bigrams) side by side (bench/peers.py)
#   make nori    - (benchmark only) Debian's Lucene 8 (liblucene8-java) and JDK, bench/nori/NoriBench.java compiled
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: install browser bench lint test test-quick finetune-demo static-ko peers nori clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch (the pinned version); see docs/install.md for the CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,scale,mteb,openvino]'
	# Byte-compile the sources, as pip does for a regular install (an editable one does not): `koembed --help`
	# then starts without compiling ~50 modules, also where PYTHONDONTWRITEBYTECODE is set.
	$(PY) -m compileall -q src
	touch $@

install: $(VENV)/.installed

bench: install
	$(VENV)/bin/koembed bench --out $(OUT)/results.json --run-out $(OUT)/runs --plot $(OUT)/bench.png

# The playground's browser test drives Debian's chromium (and its screenshots want a Korean font). Where they are
# missing and apt-get can (root), this says what apt-get will install and upgrade, and why, then installs them;
# `make test NO_APT=1` never runs apt-get (the browser test then skips, and fails under CI=true).
BROWSER_PACKAGES := chromium chromium-driver fonts-nanum
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -d /usr/share/fonts/truetype/nanum ]; \
	then :; elif [ -z "$(NO_APT)" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "make test: the playground's browser test (tests/test_playground.py) needs $(BROWSER_PACKAGES);"; \
		echo "  some are missing, so apt-get will update its lists and install them system-wide (NO_APT=1 skips this):"; \
		apt-get update -qq && apt-get install -s -y $(BROWSER_PACKAGES) | awk ' \
			/^Inst/ { if ($$3 ~ /^\[/) up = up " " $$2; else add = add " " $$2 } \
			END { n = split(add, a, " "); m = split(up, u, " "); \
			      printf "  apt-get: %d new packages:%s\n  apt-get: %d upgraded packages:%s\n", n, add, m, up }' \
			| fold -s -w 116; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES); \
	else echo "chromium/chromium-driver missing and apt-get unavailable, not root or NO_APT set: the browser test" \
		"will skip (and fail under CI=true)"; fi

# Lint before the tests (seconds): ruff (pyflakes, import order, bugbear, pyupgrade, simplify, RUF, pylint's; the rules
# in pyproject.toml [tool.ruff.lint]) on the whole tree, mypy on the whole koembed package
# (pyproject.toml [tool.mypy] files = src/koembed).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install lint browser
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# The quick loop: what `make test` runs but the tests marked slow (real models, ../shared/data, the headless browser),
# so no browser step and no apt-get.
test-quick: install lint
	$(PY) -m pytest -ra -m 'not slow' $(PYTEST_ARGS)

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

# Benchmark only: Lucene BM25 with nori (KoreanAnalyzer at its defaults, Elasticsearch's `nori` analyzer) for
# bench/peers.py: Debian's liblucene8-java (Lucene 8.8.1; its jars in /usr/share/java are named *-8.7.0.jar) and
# default-jdk-headless, installed with apt-get where missing (as root), then bench/nori/NoriBench.java compiled
# into ~/.cache/koembed-peers/nori (never into the repository). It ends by printing nori's tokens of one sentence.
NORI_CLASSES ?= $(HOME)/.cache/koembed-peers/nori
LUCENE8_CP = $$(ls /usr/share/java/lucene-core-[0-9]*.jar /usr/share/java/lucene-analyzers-common-[0-9]*.jar \
	/usr/share/java/lucene-analyzers-nori-[0-9]*.jar | tr '\n' ':')
nori:
	@{ command -v javac >/dev/null && ls /usr/share/java/lucene-analyzers-nori-[0-9]*.jar >/dev/null 2>&1; } || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q liblucene8-java default-jdk-headless; }
	mkdir -p $(NORI_CLASSES)
	javac -d $(NORI_CLASSES) -cp "$(LUCENE8_CP)" bench/nori/NoriBench.java
	java -cp "$(LUCENE8_CP)$(NORI_CLASSES)" NoriBench tokens "전세 보증금을 돌려받지 못했어요"

# Benchmark only: koembed's lexical retrievers against Lucene BM25, nori (above) and Anserini 0.22.1 (from the
# pyserini wheel, on Debian's Java 17; its `-language ko` is CJKAnalyzer's character bigrams), side by side
# (bench/peers.py; needs ../shared/data). Java, Lucene, pyjnius and the jar are never koembed dependencies: the jar
# is cached in ~/.cache/koembed-peers, corpora and indexes go to /tmp/koembed-peers.
peers: install nori
	$(PY) -m pip install -q -e '.[peers]'
	$(PY) bench/peers.py --out $(OUT)/peers.json --run-out $(OUT)/peer-runs $(PEERS_ARGS)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
