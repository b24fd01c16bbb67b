# The two commands of the README, the fast inner loop, and their helpers. Everything else is
# in scripts/.
.PHONY: demo test check lint typecheck unit fresh-venv lock image-test reliability bench \
        restart-router call

VENV ?= $(or $(WAMPD_VENV),.venv)
# The paths scripts/test lints, read from it so `make check` and `make test` never disagree.
LINT_PATHS := $(shell sed -n 's/^"$$VENV\/bin\/ruff" check //p' scripts/test)
# More pytest arguments for `make check`. Without promtool or systemd-analyze (scripts/bootstrap
# installs them as root), their tests FAIL; leave them out explicitly with
#   make check PYTEST_ARGS='-m "not tool"'
# (CI never does: tests/unit/conftest.py fails a CI run that deselects them).
PYTEST_ARGS ?=

demo:            ## local Crossbar router + wampd hosting examples/hello.py
	scripts/demo

test:            ## virtualenvs, ruff, mypy and the whole test suite (real router included)
	scripts/test

# Installs nothing (scripts/bootstrap only when $(VENV) does not exist yet) and starts no
# router: well under a minute on 2 cores. `make -k check` goes on after a failing step.
check: fresh-venv lint typecheck unit  ## fast inner loop: ruff, mypy, unit tests (< 60 s)
	@echo "check: ruff, mypy and the unit tests passed"

lint: | $(VENV)/bin/pytest   ## ruff check + ruff format --check, on scripts/test's paths
	@test -n "$(LINT_PATHS)" || { echo "make: cannot read the ruff paths from scripts/test" >&2; exit 1; }
	@echo "== ruff ($(LINT_PATHS))"
	@$(VENV)/bin/ruff check $(LINT_PATHS)
	@$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck: | $(VENV)/bin/pytest   ## mypy, as configured in pyproject.toml
	@echo "== mypy"
	@$(VENV)/bin/mypy

unit: | $(VENV)/bin/pytest   ## the unit tests only (PYTEST_ARGS adds pytest arguments)
	@echo "== pytest tests/unit"
	@$(VENV)/bin/pytest tests/unit -q -p no:cacheprovider $(PYTEST_ARGS)

# A warning, not a reinstall: bootstrapping on every check would cost far more than the check.
fresh-venv: | $(VENV)/bin/pytest
	@WAMPD_VENV=$(VENV) scripts/bootstrap --check >/dev/null \
	  || echo "make: warning: $(VENV) is older than pyproject.toml or requirements/dev.lock;" \
	          "run scripts/bootstrap" >&2

$(VENV)/bin/pytest:
	WAMPD_VENV=$(VENV) scripts/bootstrap

lock:            ## regenerate requirements/*.lock from pyproject.toml and requirements/*.in
	scripts/lock

image-test:      ## build the real container image with buildah and run it against a real router
	scripts/test-image

reliability:     ## the full fault matrix, a 10-minute soak and HTTP load (docs/RELIABILITY.md)
	scripts/reliability

bench:           ## wampd vs autobahn's runners on a real router, ~18 min (docs/BENCHMARKS.md)
	scripts/bench

restart-router:  ## while the demo runs: kill -9 the demo router and start it again
	scripts/demo restart-router

call:            ## while the demo runs: call com.example.hello like any WAMP client
	scripts/demo call
