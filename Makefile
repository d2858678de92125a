# Two commands first: `make demo` (lobes of the sample CT) and `make test` (the test suite).
# Both create or update the environment in .venv/ (Python 3.11) on first use.

PYTHON ?= python3.11
# UTF-8 whatever the locale (CI and cron often run with LANG=C): messages and reports hold ± − ×.
export PYTHONUTF8 := 1
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-training.txt requirements-dev.txt | cksum | cut -d' ' -f1)
SAMPLE := samples/ct/sample-healthy.mha

.PHONY: setup demo test test-avx2 test-all results testset-v2 bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-training.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(PY) -m algorithm predict $(SAMPLE) -o demo-output

test: setup
	$(PY) -m pytest -m "not slow" -q

# The quick suite as on an x86-64 CPU without native bfloat16 (AVX2 only): oneDNN's and ATen's ISA
# capped (both read at start-up); --precision auto must pick float32 and nothing may hang.
AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
test-avx2: setup
	$(AVX2_ONLY) $(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

# The held-out phantom benchmark of docs/results.md (seeds 0-31, disjoint from training's 1000+),
# generated with phantoms v1; its table in docs/results.md is the v1 weights' (history); this target
# scores whatever weights are shipped on it (the v2 weights' own test set: testset-v2 below).
TESTSET := data/testset
results: setup
	$(PY) -m training phantoms --out $(TESTSET) --n 32 --seed 0 --size 96x96x80 --pathology none,copd,covid,effusion --cycle-pathology --version 1 --no-progress
	$(PY) -m algorithm predict $(TESTSET)/images -o $(TESTSET)-pred --no-preview --quiet --overwrite
	$(PY) -m training evaluate --pred $(TESTSET)-pred --ref $(TESTSET)/labels --out results/evaluation/phantoms

# The held-out test set regenerated from phantoms v2 (issue 17), scored in docs/results.md. It is
# made with the generator of commit 237d99e, taken from git history (v2's output changed after it,
# at fc2aa59 and later; docs/realism.md), so that the set stays the scored one. Seeds 0-39,
# disjoint from training's 2000+; every pathology 10 times at 96^2; plus 8 cases at clinical
# resolution (512^2, in-plane 0.5-1 mm, slices 0.5-3 mm, drawn per seed) for the lung-extent work.
TESTSET_V2 := data/testset-v2
TESTSET_V2_COMMIT := 237d99e
TESTSET_V2_CODE := .testset-v2-generator
testset-v2: setup
	rm -rf $(TESTSET_V2_CODE) && mkdir -p $(TESTSET_V2_CODE)
	git archive $(TESTSET_V2_COMMIT) algorithm training | tar -x -C $(TESTSET_V2_CODE)
	cd $(TESTSET_V2_CODE) && $(CURDIR)/$(PY) -m training phantoms --out $(CURDIR)/$(TESTSET_V2) --n 40 --seed 0 --size 96x96x80 --pathology none,copd,covid,effusion --cycle-pathology --version 2 --no-progress
	cd $(TESTSET_V2_CODE) && $(CURDIR)/$(PY) -m training phantoms --out $(CURDIR)/$(TESTSET_V2)-clinical --n 8 --seed 100 --pathology none,copd,covid,effusion --cycle-pathology --version 2 --no-progress
	rm -rf $(TESTSET_V2_CODE)

# Inference speed and memory (results/performance.*, quoted in docs/performance.md) and stage-II tiling (docs/tiling.md, results/tiling.json); installs the lungmask peer first.
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt
	$(PY) -m benchmarks.inference --device cpu --threads 2 --sizes 100,200,400 --reference-sizes 100 --peer-sizes 100
	test -d $(TESTSET)/images || $(PY) -m training phantoms --out $(TESTSET) --n 32 --seed 0 --size 96x96x80 --pathology none,copd,covid,effusion --cycle-pathology --version 1 --no-progress
	$(PY) -m benchmarks.tiling --n 4 --threads 2

clean:
	rm -rf demo-output .pytest_cache
