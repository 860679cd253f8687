# offsite: build, test and run the all-in-one platform.
#
#   make            build target/release/offsite (same as `make build`), web UI inside
#   make web        build the web UI (portal/web -> portal/web/dist, embedded by the portal)
#   make test       build the web UI, run its unit tests and the whole Rust suite (browser tests
#                   included), check deploy/ offline (scripts/validate-deploy.sh), fuzz the HJ 212
#                   parser and the device protocol decoders 20 s per target (the
#                   portal's input target, whose sanitizer build takes ~10 min here, runs in `make fuzz`), then
#                   stop the shared test database
#   make demo       build, then `offsite demo $(DEMO_ARGS)`
#   make fuzz       fuzz every target, 300 s each (scripts/fuzz.sh)
#   make models     retrain the shipped anomaly model (models/anomaly/) in models/.venv
#
# Every Rust target first runs scripts/setup.sh, which installs what is missing and is fast otherwise.

CARGO ?= cargo
DEMO_ARGS ?=
PYTHON ?= python3

BIN := target/release/offsite
ORT_LIB := third_party/onnxruntime/libonnxruntime.so
MODELS_VENV := models/.venv

.DEFAULT_GOAL := build
.PHONY: setup web build demo test fuzz bench-ingest bench-ingest-mosquitto bench-broker bench-edge bench-detect bench-api bench-video bench-hj212 bench-soak bench-soak-ci models clean

setup:
	bash scripts/setup.sh

# The release binary embeds portal/web/dist, so the UI is built first. `npm ci` installs exactly
# what package-lock.json names.
web: setup
	cd portal/web && npm ci --no-audit --no-fund && npm run build

build: setup web
	$(CARGO) build --release --locked -p offsite-cli
	@if [ -f $(ORT_LIB) ]; then cp -f $(ORT_LIB) target/release/libonnxruntime.so; \
	else echo "note: $(ORT_LIB) is missing; ONNX Runtime will not be found next to $(BIN)"; fi
	@mkdir -p target/release/models/anomaly && \
		cp -f models/anomaly/model.json models/anomaly/forecaster.onnx target/release/models/anomaly/
	@# The person detector and the demo's clips, when setup placed them (the demo runs without).
	@if [ -f models/yolox-nano/yolox_nano.onnx ]; then mkdir -p target/release/models/yolox-nano && \
		cp -f models/yolox-nano/yolox_nano.onnx target/release/models/yolox-nano/; fi
	@if [ -d demo-media ]; then mkdir -p target/release/demo-media && cp -f demo-media/* target/release/demo-media/; fi

demo: build
	./$(BIN) demo $(DEMO_ARGS)

# The end-to-end tests run the real `offsite` binary (target/debug/offsite), so it is built first;
# the web UI too, because the browser tests (tests/tests/browser.rs) drive it and a debug binary
# serves portal/web/dist from the disk. The web UI's unit tests (Vitest) run first and count.
# The tests leave their PostgreSQL cluster running between test binaries: stop it whatever the
# outcome, and keep the first failing exit status.
test: setup web
	@status=0; \
	(cd portal/web && npm test) || status=$$?; \
	{ $(CARGO) build --locked -p offsite-cli && \
	  RUST_BACKTRACE=1 $(CARGO) test --workspace --locked --no-fail-fast; } || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	bash scripts/fuzz.sh 20 hj212 wire || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	bash scripts/validate-deploy.sh || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	$(MAKE) bench-soak-ci || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	bash scripts/stop-test-db.sh || true; \
	exit $$status

# Fuzzing uses the stable toolchain (RUSTC_BOOTSTRAP=1, see the script); findings fail the target.
fuzz: setup
	bash scripts/fuzz.sh 300

bench-ingest: build
	./$(BIN) bench ingest --json

bench-ingest-mosquitto: build
	./$(BIN) bench ingest --external-broker mosquitto --json

bench-broker: build
	./$(BIN) bench broker --json

bench-edge: build
	./$(BIN) bench edge

bench-detect: build
	./$(BIN) bench detect --json

bench-api: build
	./$(BIN) bench api --json

bench-video: build
	./$(BIN) bench video --json

bench-hj212: build
	./$(BIN) bench hj212 --json

bench-soak: build
	./$(BIN) bench soak --minutes 30 --json

# The 3-minute soak (part of `make test`): 10,000 MQTT/TLS devices with a reconnect storm; fails
# unless nothing is lost, nothing is stored twice, every device reconnects and no tier panics.
# It uses the debug binary `make test` has already built (about 10 minutes here, against about 5
# plus a release build from scratch); `make bench-soak` gives the release figures.
# RELIABILITY.md "Soak".
bench-soak-ci:
	$(CARGO) build --locked -p offsite-cli
	./target/debug/offsite bench soak --minutes 3 --json

# Regenerates models/anomaly/forecaster.onnx, model.json and reference.json from a fixed seed
# (synthetic data only, about a minute on 2 cores). Deterministic: on the same CPU architecture it
# reproduces the committed files byte for byte. Needs only Python 3 with venv, not setup.sh.
models:
	@test -x $(MODELS_VENV)/bin/python || $(PYTHON) -m venv $(MODELS_VENV)
	$(MODELS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
		-r models/anomaly/requirements.txt
	$(MODELS_VENV)/bin/python models/anomaly/train.py

clean:
	$(CARGO) clean
