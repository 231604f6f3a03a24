# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
.PHONY: demo test lint format proto install clean

VENV := .venv
INSTALLED := $(VENV)/.installed

$(INSTALLED): pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh

install: $(INSTALLED)

## make demo: install everything, then run the whole system on embedded defaults
demo: $(INSTALLED)
	$(VENV)/bin/tickerplant demo

## make test: install everything, start PostgreSQL and Kafka, lint, run every test
test: $(INSTALLED)
	scripts/test.sh $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make proto: regenerate normalize/proto/*_pb2.py after editing the schema
proto: $(INSTALLED)
	$(VENV)/bin/python -m normalize.proto.generate

clean:
	rm -rf $(VENV) deploy/kafka/libs var .pytest_cache .ruff_cache
