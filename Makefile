# The two commands of the README. Both set up whatever is missing first
# (venv, Docker engine + Compose, images; see scripts/dev.sh).
.PHONY: setup run test unit lint

setup:
	scripts/dev.sh setup

# A default scenario end to end: bring up the split topology, drive HTTPS load, write a run directory.
run:
	scripts/dev.sh run

# The whole test suite: unit tests and integration tests with real containers.
test:
	scripts/dev.sh test

# ruff, mypy and the import layering (also the first step of `make test`).
lint:
	scripts/dev.sh lint

# Only the fast tests (no Docker), for the edit-test loop.
unit:
	.venv/bin/python -m pytest tests/unit -q
