# The two commands a newcomer needs: `make run` and `make test`. Both create .venv as needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-repeat lint fmt venv bench clean

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(BIN)/.installed

## Start the server (daphne, HTTP + WebSocket). Embedded SQLite / in-memory layer unless
## DATABASE_URL / REDIS_URL are set.
run: venv
	./scripts/run.sh

## The whole test suite against a real PostgreSQL and Redis, plus ruff and the migrations check.
test: venv
	./scripts/test.sh

## The suite N times in a row (stops at the first failure): `make test-repeat N=10 ARGS="tests/dm"`.
N ?= 5
ARGS ?=
test-repeat: venv
	./scripts/repeat.sh $(N) $(ARGS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

fmt: venv
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: venv
	$(BIN)/python bench/dm_throughput.py

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
