# plugin-facade: every command a developer or CI needs. `make help` lists them.
#
# Tools are pinned in the repo and installed here on demand, so a fresh clone with
# empty caches needs nothing but Go:
#   - buf and grpcurl: tools/go.mod, installed into ./bin;
#   - protoc plugins: tool directives in go.mod, run by buf through `go tool`;
#   - google/api and openapiv2 option protos: copied from pinned Go modules into third_party/.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN        := $(CURDIR)/bin
BUF        := $(BIN)/buf
GRPCURL    := $(BIN)/grpcurl
# Protos our contract imports, copied from pinned Go modules into the git-ignored
# third_party/ by `make protos`, never edited by hand:
#   - google/api (annotations.proto, http.proto) and google/rpc ship inside
#     grpc-gateway v1.16.0 under third_party/googleapis;
#   - protoc-gen-openapiv2/options ship inside grpc-gateway/v2, at the version
#     go.mod pins (the same as the protoc-gen-openapiv2 that reads them).
GOOGLEAPIS_MODULE := github.com/grpc-ecosystem/grpc-gateway@v1.16.0
GOOGLEAPIS        := third_party/googleapis
OPENAPIV2_MODULE  := github.com/grpc-ecosystem/grpc-gateway/v2
OPENAPIV2         := third_party/openapiv2

GO_TEST_FLAGS ?= -race -count=1 -timeout=10m

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the facade against the built-in sandbox upstream (prints ready-to-paste grpcurl and curl commands).
	go run ./cmd/server --sandbox

.PHONY: build
build: ## Build the server binary into ./bin/plugin-facade.
	go build -o $(BIN)/plugin-facade ./cmd/server

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
tools: $(BUF) $(GRPCURL) ## Install the pinned buf and grpcurl into ./bin.

$(BUF) $(GRPCURL) &: tools/go.mod tools/go.sum
	cd tools && GOBIN=$(BIN) go install tool
	@touch $(BUF) $(GRPCURL)

.PHONY: protos
protos: third_party/.copied ## Copy the google/api, google/rpc and openapiv2 option protos from their pinned Go modules.

third_party/.copied: Makefile go.mod
	rm -rf third_party
	mkdir -p $(GOOGLEAPIS) $(OPENAPIV2)/protoc-gen-openapiv2
	dir=$$(go mod download -json $(GOOGLEAPIS_MODULE) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -n "$$dir" || { echo "cannot download $(GOOGLEAPIS_MODULE)" >&2; exit 1; }; \
	  cp -R "$$dir/third_party/googleapis/google" $(GOOGLEAPIS)/
	go mod download $(OPENAPIV2_MODULE)
	dir=$$(go list -m -f '{{.Dir}}' $(OPENAPIV2_MODULE)); \
	  mkdir -p $(OPENAPIV2)/protoc-gen-openapiv2/options; \
	  cp "$$dir"/protoc-gen-openapiv2/options/*.proto $(OPENAPIV2)/protoc-gen-openapiv2/options/
	chmod -R u+w third_party
	@touch $@

.PHONY: generate
generate: $(BUF) protos ## Regenerate gen/ from proto/.
	$(BUF) generate

.PHONY: check-generated
check-generated: $(BUF) protos ## Fail if gen/ differs from what proto/ generates.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(BUF) generate -o "$$tmp"; \
	  diff -r "$$tmp/gen" gen || { echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; }

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
tidy-check: ## Fail if go.mod or go.sum (of the service or of tools/) are not tidy.
	go mod tidy -diff
	cd tools && go mod tidy -diff

.PHONY: clean
clean: ## Remove installed tools and copied protos.
	rm -rf $(BIN) third_party
