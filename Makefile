# offsite: build, test and run the all-in-one platform.
#
#   make            build target/release/offsite (same as `make build`)
#   make test       run the whole test suite, then stop the shared test database
#   make demo       build, then `offsite demo $(DEMO_ARGS)`
#
# Every target first runs scripts/setup.sh, which installs what is missing and is fast otherwise.

CARGO ?= cargo
DEMO_ARGS ?=

BIN := target/release/offsite
ORT_LIB := third_party/onnxruntime/libonnxruntime.so

.DEFAULT_GOAL := build
.PHONY: setup build demo test bench-ingest bench-broker bench-edge clean

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release --locked -p offsite-cli
	@if [ -f $(ORT_LIB) ]; then cp -f $(ORT_LIB) target/release/libonnxruntime.so; \
	else echo "note: $(ORT_LIB) is missing; ONNX Runtime will not be found next to $(BIN)"; fi

demo: build
	./$(BIN) demo $(DEMO_ARGS)

# The end-to-end tests run the real `offsite` binary (target/debug/offsite), so it is built first.
# The tests leave their PostgreSQL cluster running between test binaries: stop it whatever the
# outcome, and keep the tests' exit status.
test: setup
	@status=0; \
	$(CARGO) build --locked -p offsite-cli && \
	RUST_BACKTRACE=1 $(CARGO) test --workspace --locked --no-fail-fast || status=$$?; \
	bash scripts/stop-test-db.sh || true; \
	exit $$status

bench-ingest: build
	./$(BIN) bench ingest --json

bench-broker: build
	./$(BIN) bench broker --json

bench-edge: build
	./$(BIN) bench edge

clean:
	$(CARGO) clean
