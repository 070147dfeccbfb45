# plugin-facade: every command a developer or CI needs. `make help` lists them.
#
# Tools are pinned in the repo and installed here on demand, so a fresh clone with
# empty caches needs nothing but Go:
#   - buf and grpcurl: tools/go.mod, installed into ./bin;
#   - protoc plugins: tool directives in go.mod, run by buf through `go tool`;
#   - google/api protos: copied from a pinned Go module into third_party/googleapis.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN        := $(CURDIR)/bin
BUF        := $(BIN)/buf
GRPCURL    := $(BIN)/grpcurl
# The googleapis protos (google/api/annotations.proto, http.proto, google/rpc/...)
# ship inside this Go module under third_party/googleapis.
GOOGLEAPIS_MODULE := github.com/grpc-ecosystem/grpc-gateway@v1.16.0
GOOGLEAPIS        := third_party/googleapis

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

.PHONY: tools
tools: $(BUF) $(GRPCURL) ## Install the pinned buf and grpcurl into ./bin.

$(BUF) $(GRPCURL) &: tools/go.mod tools/go.sum
	cd tools && GOBIN=$(BIN) go install tool
	@touch $(BUF) $(GRPCURL)

.PHONY: googleapis
googleapis: $(GOOGLEAPIS)/.copied ## Copy the google/api and google/rpc protos from their pinned Go module.

$(GOOGLEAPIS)/.copied: Makefile
	rm -rf $(GOOGLEAPIS)
	mkdir -p $(GOOGLEAPIS)
	dir=$$(go mod download -json $(GOOGLEAPIS_MODULE) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -n "$$dir" || { echo "cannot download $(GOOGLEAPIS_MODULE)" >&2; exit 1; }; \
	  cp -R "$$dir/third_party/googleapis/google" $(GOOGLEAPIS)/
	chmod -R u+w $(GOOGLEAPIS)
	@touch $@

.PHONY: generate
generate: $(BUF) googleapis ## Regenerate gen/ from proto/.
	$(BUF) generate

.PHONY: check-generated
check-generated: $(BUF) googleapis ## Fail if gen/ differs from what proto/ generates.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(BUF) generate -o "$$tmp"; \
	  diff -r "$$tmp/gen" gen || { echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; }

.PHONY: lint
lint: $(BUF) googleapis ## buf lint (STANDARD) and gofmt.
	$(BUF) lint
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './third_party/*')); \
	  test -z "$$out" || { echo "gofmt needed on:" >&2; echo "$$out" >&2; exit 1; }

.PHONY: breaking
breaking: $(BUF) googleapis ## buf breaking against origin/main (skipped when there is no origin/main).
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
