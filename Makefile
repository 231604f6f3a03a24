# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
.PHONY: demo test lint format proto install fuzz bench clean

VENV := .venv
INSTALLED := $(VENV)/.installed

# The compiled normalizer core is built by pip (setup.py): rebuild when its sources change.
$(INSTALLED): pyproject.toml setup.py scripts/bootstrap.sh $(wildcard normalize/_fastcore/*) fanout/_fastwrite.c
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

## make fuzz: differential fuzzing of the decoder and both normalizers (60 s)
fuzz: $(INSTALLED)
	$(VENV)/bin/python benchmarks/fuzz_normalizer.py

## make bench: the ticker plant benchmarks (decode, normalize, feed latency)
bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/decode.py
	$(VENV)/bin/python benchmarks/normalize.py
	$(VENV)/bin/python benchmarks/feed_latency.py

clean:
	rm -rf $(VENV) deploy/kafka/libs var .pytest_cache .ruff_cache build normalize/*.so
