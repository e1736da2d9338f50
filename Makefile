# The two commands of the README: `make demo` and `make test`.
# Both create .venv/ when needed, install the project into it, and make sure a RabbitMQ broker
# answers (see .ci/with-broker) before doing their job.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest venv screenshots bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	@.ci/with-broker $(BIN)/chassis-console --demo

test: $(STAMP)
	@.ci/with-broker $(MAKE) --no-print-directory lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check nameko_chassis console tests bench screenshots

typecheck: $(STAMP)
	$(BIN)/mypy

# Test folders mirror the packages. The probe, view, amqp and console tests never import eventlet;
# providers and chassis tests run eventlet-patched in-process code, in a pytest process of their own.
pytest: $(STAMP)
	$(BIN)/pytest tests/probe tests/view tests/amqp tests/console
	$(BIN)/pytest -p tests.eventlet_patch tests/providers tests/chassis tests/compat

screenshots: $(STAMP)
	@.ci/with-broker sh -c '$(BIN)/python screenshots/make_screenshots.py && $(BIN)/python screenshots/fleet.py'

# Every bench, each printing its own tables of figures measured side by side in one run.
BENCHES := bench/snapshot.py bench/console.py bench/overhead.py bench/watchdog.py bench/fleet.py \
	bench/inspection.py bench/panels.py

bench: $(STAMP)
	@.ci/with-broker sh -c 'for b in $(BENCHES); do echo "### $$b"; $(BIN)/python $$b || exit 1; done'

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
