# anbu: two commands take a fresh clone to a running stack (make run) and a green suite (make test).
ANBU_CACHE ?= $(HOME)/.cache/anbu
export ANBU_CACHE
# This checkout's own small venv (its code + the shared dependencies): see scripts/bootstrap.sh.
VENV := $(shell scripts/bootstrap.sh --venv)
BIN := $(VENV)/bin
NAME ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist). Most of the suite waits (on calls, prompts, processes), so
# more workers than cores pays; each has its own Asterisk pair, Kannel and ports. A test file
# stays on one worker (--dist loadfile), so its module fixtures are made once. Tests marked
# "alone" (timing-sensitive outages) run afterwards, by themselves.
TEST_WORKERS ?= 4

.PHONY: setup run test lint typecheck bench stop clean-var docker-test

setup:
	@scripts/bootstrap.sh

run: setup
	$(BIN)/anbu run

stop: setup
	$(BIN)/anbu stack down

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not alone" $(PYTEST_ARGS)
	$(BIN)/pytest -q -p no:cacheprovider -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected

# make bench          -> every benchmark;  make bench NAME=calls -> bench/calls.py only
bench: setup
	$(BIN)/python -m bench $(NAME)

# make docker-test: build the images, run the compose stack, one call and one SMS through it,
# tear down (root: installs docker.io, starts dockerd; see docker/test.sh and README).
docker-test:
	docker/test.sh
