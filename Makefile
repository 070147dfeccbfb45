# plugin-facade: every command a developer or CI needs. `make help` lists them.
#
# Tools are pinned in the repo and installed here on demand, so a fresh clone with
# empty caches needs nothing but Go:
#   - buf, grpcurl and oapi-codegen: tools/go.mod, installed into ./bin;
#   - protoc plugins: tool directives in go.mod, run by buf through `go tool`;
#   - google/api and google/rpc protos: printed from the pinned genproto modules into third_party/.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN        := $(CURDIR)/bin
BUF        := $(BIN)/buf
GRPCURL    := $(BIN)/grpcurl
OAPI_CODEGEN := $(BIN)/oapi-codegen
# Confluent Cloud's API pages (their OpenAPI YAML is extracted into
# internal/ccloudapi/testdata when they are there) and the package that holds
# the upstream's assembled OpenAPI and a client generated from it.
SHARED_PAGES := ../shared/upstream-api
CCLOUD       := internal/ccloudapi
# Protos our contract imports (google/api) and that callers need to read its
# errors (google/rpc, with ErrorInfo and HttpResponse), written by `make protos`
# into the git-ignored third_party/, never edited by hand: tools/googleprotos
# prints them from the descriptors compiled into the genproto modules at the
# versions go.mod pins (the ones the server links), offline from the module
# cache; it fails when tools/go.mod pins other versions.
GOOGLEAPIS := third_party/googleapis

GO_TEST_FLAGS ?= -race -count=1 -timeout=10m

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the facade against the built-in sandbox upstream (prints ready-to-paste grpcurl and curl commands).
	go build -o $(BIN)/plugin-facade ./cmd/server && exec $(BIN)/plugin-facade --sandbox # not go run: it exits 1 on Ctrl-C whatever the server does

.PHONY: build
build: ## Build the server binary into ./bin/plugin-facade.
	go build -ldflags '-X main.version=$(VERSION)' -o $(BIN)/plugin-facade ./cmd/server

.PHONY: test
test: check-generated lint vet tidy-check ## Run every check: generation drift, buf lint, gofmt, go vet, go mod tidy, go test -race.
	go test $(GO_TEST_FLAGS) ./...

# The processes `make bench` and `make soak` run, built once with go build (go
# run would measure the compiler) into a temporary directory.
BENCH_PKGS := ./cmd/server ./cmd/sandbox ./internal/bench/passproxy ./internal/bench/cmd/bench ./internal/bench/cmd/soak
BENCH_FLAGS ?=
SOAK_FLAGS ?=

.PHONY: bench
bench: ## Measure direct, pass-through proxy, gRPC and gateway against the sandbox (separate processes, loopback) and write docs/benchmarks.md.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go build -o "$$tmp/" $(BENCH_PKGS); \
	  mkdir -p docs; "$$tmp/bench" -bin "$$tmp" -out docs/benchmarks.md $(BENCH_FLAGS)

.PHONY: bench-realistic
bench-realistic: ## make bench with the sandbox 40ms away behind TLS and HTTP/2, as Confluent Cloud is; writes docs/benchmarks-realistic.md.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go build -o "$$tmp/" $(BENCH_PKGS); \
	  mkdir -p docs; "$$tmp/bench" -bin "$$tmp" -upstream-latency 40ms -upstream-tls -micro '' -out docs/benchmarks-realistic.md $(BENCH_FLAGS)

.PHONY: soak
soak: ## About a minute at concurrency 64 with injected upstream faults; fails on a malformed answer, a crash or growth.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go build -o "$$tmp/" $(BENCH_PKGS); \
	  "$$tmp/soak" -bin "$$tmp" $(SOAK_FLAGS)

# `make image`: the container image of Containerfile. The binary is built here
# (static, CGO_ENABLED=0) and handed to the build with the host's CA bundle as
# the whole build context, so the build pulls no base image. The first of
# podman and docker that answers builds it, unless CONTAINER_TOOL says which;
# CONTAINER_FLAGS go before its subcommand (e.g. --storage-driver=vfs).
VERSION         ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE           ?= plugin-facade:$(VERSION)
IMAGE_ARCH      ?= $(shell go env GOARCH)
CA_BUNDLE       ?= /etc/ssl/certs/ca-certificates.crt
CONTAINER_TOOL  ?=
CONTAINER_FLAGS ?=
IMAGE_MAX_BYTES := 30000000

.PHONY: image
image: ## Build the container image (IMAGE, default plugin-facade:<git describe>; FROM scratch, static, non-root) with podman or docker.
	@tool='$(CONTAINER_TOOL)'; tried=; \
	if [ -z "$$tool" ]; then \
	  for t in podman docker; do \
	    if ! command -v $$t >/dev/null; then tried="$$tried\n  $$t: not installed"; \
	    elif ! why=$$($$t $(CONTAINER_FLAGS) info 2>&1 >/dev/null); then \
	      tried="$$tried\n  $$t: installed, but '$$t $(CONTAINER_FLAGS) info' fails: $$(printf '%s' "$$why" | tail -n 1)"; \
	    else tool=$$t; break; fi; \
	  done; \
	fi; \
	if [ -z "$$tool" ]; then \
	  printf "make image: neither podman nor docker can build an image here:%b\nInstall podman (apt-get install podman) or start a Docker engine, or name one with CONTAINER_TOOL=...\n" "$$tried" >&2; \
	  exit 1; \
	fi; \
	test -r $(CA_BUNDLE) || { echo "make image: no CA bundle at $(CA_BUNDLE) (install ca-certificates, or set CA_BUNDLE)" >&2; exit 1; }; \
	ctx=$$(mktemp -d); trap 'rm -rf "$$ctx"' EXIT; set -x; \
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' \
	  -o "$$ctx/plugin-facade" ./cmd/server; \
	cp $(CA_BUNDLE) "$$ctx/ca-certificates.crt"; \
	cp Containerfile "$$ctx/Containerfile"; \
	$$tool $(CONTAINER_FLAGS) build --platform linux/$(IMAGE_ARCH) --build-arg VERSION=$(VERSION) \
	  -f "$$ctx/Containerfile" -t $(IMAGE) "$$ctx"; \
	set +x; size=$$($$tool $(CONTAINER_FLAGS) image inspect --format '{{.Size}}' $(IMAGE)); \
	echo "built $(IMAGE) with $$tool: $$size bytes"; \
	test "$$size" -le $(IMAGE_MAX_BYTES) || { echo "make image: $(IMAGE) is $$size bytes, over $(IMAGE_MAX_BYTES)" >&2; exit 1; }

.PHONY: tools
tools: $(BUF) $(GRPCURL) $(OAPI_CODEGEN) ## Install the pinned buf, grpcurl and oapi-codegen into ./bin.

$(BUF) $(GRPCURL) $(OAPI_CODEGEN) &: tools/go.mod tools/go.sum
	cd tools && GOBIN=$(BIN) go install tool
	@touch $(BUF) $(GRPCURL) $(OAPI_CODEGEN)

.PHONY: protos
protos: third_party/.copied ## Write the google/api and google/rpc protos from the genproto modules go.mod pins.

third_party/.copied: Makefile go.mod tools/go.mod tools/googleprotos/main.go
	rm -rf third_party
	cd tools && go run ./googleprotos -gomod ../go.mod -out ../$(GOOGLEAPIS)
	@touch $@

# ccloud-api writes Confluent Cloud's assembled OpenAPI ($(1)/openapi.yaml) and
# the client oapi-codegen generates from it ($(1)/client.gen.go), from the page
# YAML in $(CCLOUD)/testdata, first extracted again from $(SHARED_PAGES) when
# $(2) is set and the pages are there.
define ccloud-api
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go run ./$(CCLOUD)/assemble -dir $(CCLOUD) $(if $(2),$(if $(wildcard $(SHARED_PAGES)),-pages $(SHARED_PAGES))) \
	    -out $(1)/openapi.yaml -codegen "$$tmp/codegen.yaml" && \
	  $(OAPI_CODEGEN) -config $(CCLOUD)/oapi-codegen.yaml -o $(1)/client.gen.go "$$tmp/codegen.yaml"
endef

.PHONY: generate
generate: $(BUF) $(OAPI_CODEGEN) protos ## Regenerate gen/ from proto/, and internal/ccloudapi from the upstream's API pages.
	$(BUF) generate
	$(call ccloud-api,$(CCLOUD),extract)

.PHONY: check-generated
check-generated: $(BUF) $(OAPI_CODEGEN) protos ## Fail if gen/ or internal/ccloudapi differ from what they are generated from.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(BUF) generate -o "$$tmp"; \
	  diff -r -x go.mod -x go.sum "$$tmp/gen" gen && diff -r "$$tmp/internal/gatewaypb" internal/gatewaypb || { echo "gen/ or internal/gatewaypb is stale: run 'make generate' and commit the result" >&2; exit 1; }
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(MAKE) --no-print-directory ccloud-api-into DIR="$$tmp"; \
	  for f in openapi.yaml client.gen.go; do \
	    diff "$$tmp/$$f" $(CCLOUD)/$$f >/dev/null || { echo "$(CCLOUD)/$$f is stale: run 'make generate' and commit the result" >&2; exit 1; }; \
	  done

.PHONY: ccloud-api-into
ccloud-api-into: $(OAPI_CODEGEN)
	$(call ccloud-api,$(DIR),)

.PHONY: lint
lint: $(BUF) protos ## buf lint (STANDARD) and gofmt.
	$(BUF) lint
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './third_party/*')); \
	  test -z "$$out" || { echo "gofmt needed on:" >&2; echo "$$out" >&2; exit 1; }

.PHONY: breaking
breaking: $(BUF) protos ## buf breaking against origin/main (skipped when there is no origin/main).
	if git rev-parse -q --verify origin/main >/dev/null; then \
	  $(BUF) breaking --against '.git#ref=origin/main'; \
	else echo "no origin/main: skipping buf breaking"; fi

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: tidy-check
tidy-check: ## Fail if go.mod or go.sum (of the service, of the client module gen/ or of tools/) are not tidy.
	go mod tidy -diff
	cd gen && go mod tidy -diff
	cd tools && go mod tidy -diff

.PHONY: clean
clean: ## Remove installed tools and copied protos.
	rm -rf $(BIN) third_party
