# Every target creates the virtualenv and installs first, so each works from a fresh clone; a new
# lock recreates it (--clear), so the venv holds exactly what the lock says.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BUNDLES := depot office warehouse
DEMO_DIR ?= runs/demo
# buf comes from the npm registry (@bufbuild/buf ships the real binary)
BUF := .tools/node_modules/.bin/buf

.PHONY: install test test-latest lock demo bundles bench lint examples proto image clean

# The lock (requirements/lock.txt: exact versions with hashes, for Python 3.11-3.13 on Linux
# x86_64 and aarch64) is what every target installs; pyproject.toml keeps the ranges for people
# who install gridmesh as a library. `make lock` refreshes it, `make test-latest` tries the newest.
LOCK := requirements/lock.txt
UV_VERSION := 0.13.8
UV := .tools/uv/bin/uv

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# the dashboard's browser tests run Debian's chromium (never a browser Playwright downloads)
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)

test: install $(BUF) $(CHROMIUM)
	$(PY) -m pytest -n 2 -q

$(UV):
	$(PYTHON) -m venv .tools/uv && .tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

# Re-resolve the lock from pyproject.toml's ranges (newest allowed versions), for every platform
# and Python the project supports, and the image's subset of it (no dev or example extras) at the
# same versions; commit both once `make test` passes on them.
lock: $(UV)
	$(UV) pip compile pyproject.toml requirements/build.in requirements/image.in --extra dev --extra examples \
	  --universal --python-version 3.11 --generate-hashes --upgrade -o $(LOCK)
	$(UV) pip compile pyproject.toml requirements/build.in requirements/image.in --constraint $(LOCK) \
	  --universal --python-version 3.11 --generate-hashes -o requirements/image.txt
	# every locked version must install from wheels wherever gateways and the image run
	for py in 3.11 3.12 3.13; do for platform in x86_64-manylinux_2_28 aarch64-manylinux_2_28; do \
	  $(UV) pip compile pyproject.toml requirements/build.in requirements/image.in --extra dev --extra examples \
	    --constraint $(LOCK) --python-version $$py --python-platform $$platform --no-build -q -o /dev/null \
	  || exit 1; done; done

# The suite against the newest versions pyproject.toml allows, on purpose, in a venv of its own:
# catches upstream changes before a `make lock` takes them in.
LATEST_VENV := .venv-latest
test-latest: $(BUF) $(CHROMIUM)
	rm -rf $(LATEST_VENV) && $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/pip install --quiet --upgrade -e '.[dev,examples]'
	# the one test that asks the venv to be the lock is the one this target means to break
	$(LATEST_VENV)/bin/python -m pytest -n 2 -q --deselect tests/scripts/test_lock.py::test_this_environment_is_the_lock

# The main job: a portfolio and three site nodes on loopback with mTLS, one simulated day
# in about two minutes; exits non-zero if a cap or an EV's energy was not kept.
demo: install
	$(VENV)/bin/gridmesh demo --out runs

# Each example bundle optimized and reported (the single-site path, no services).
bundles: install
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	for b in $(BUNDLES); do \
	  cp -r examples/bundles/$$b $(DEMO_DIR)/$$b && \
	  $(VENV)/bin/gridmesh optimize $(DEMO_DIR)/$$b && \
	  $(VENV)/bin/gridmesh report $(DEMO_DIR)/$$b || exit 1; \
	done

bench: install
	$(PY) bench/optimizer.py
	$(PY) bench/sitenode.py
	$(PY) bench/protocols.py
	$(PY) bench/stream.py
	$(PY) bench/portfolio_solve.py

$(BUF):
	mkdir -p .tools && cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0

lint: install $(BUF)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd protos && ../$(BUF) lint

proto: install
	$(PY) scripts/gen_protos.py

examples: install
	$(PY) scripts/build_example_bundles.py

# One image for both services (non-root, health-checked); needs a Docker engine.
image:
	docker build -t gridmesh:$$(grep -m1 '^version' pyproject.toml | cut -d'"' -f2) .

clean:
	rm -rf $(VENV) $(LATEST_VENV) runs .tools .pytest_cache .ruff_cache .hypothesis test-artifacts
