# plugin-facade: every command a developer or CI needs. `make help` lists them.
#
# Tools are pinned in the repo and installed here on demand, so a fresh clone with
# empty caches needs nothing but Go and npm (or curl):
#   - buf: Buf's own prebuilt binary, from the npm registry (@bufbuild/buf-<platform>),
#     pinned by version and checksum; installed into ./bin;
#   - oapi-codegen and grpcurl: tools/go.mod, each built from source into ./bin only
#     when a target needs it (make test needs oapi-codegen; only `make grpcurl` and
#     `make tools` build grpcurl);
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

# `go test -vet=all` runs every analyzer of `go vet` on the packages it builds
# for the race detector, so make test compiles the dependencies once (with
# -race) instead of twice (go vet alone compiles them without it).
GO_TEST_FLAGS ?= -race -count=1 -timeout=10m
# grpcnotrace drops grpc-go's golang.org/x/net/trace (its /debug/requests pages,
# which the facade never serves). That package pulls in html/template, whose
# reflective method calls keep the linker from dropping any exported method of
# any type: the binary is 19.7 MB instead of 28.7 MB without it (docs/image.md).
# Every build of the server (run, build, test, image, bench) uses it, so the
# binary tested is the binary shipped.
GO_TAGS  := grpcnotrace
# encoding/json's implementation on top of encoding/json/v2 (the same v1 API
# and behaviour; still an experiment of the toolchain in Go 1.26) decodes the
# upstream's answers in half the time and half the allocations
# (docs/benchmarks.md). Exported, so that every go command of this Makefile,
# the image's build included, builds with it: the binary tested is the binary
# shipped. A go build without make gets the v1 implementation, which behaves
# the same, slower.
export GOEXPERIMENT := jsonv2
# The version the binary reports (--version, build_info, User-Agent): the git
# tag when the commit has one, else the commit, "-dirty" when the tree has
# uncommitted changes.
GIT_VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION     ?= $(GIT_VERSION)
GO_LDFLAGS   = -X main.version=$(VERSION)

# progress shows a compile as it goes, reading `go build -v`'s output: one
# line counting the packages it reports compiling (a warm cache compiles none
# and prints nothing) out of the packages $(1) depends on, and the module
# downloads; anything else (a compile error) is printed as it is.
define progress
total=$$(go list -tags $(GO_TAGS) -deps $(1) | wc -l | tr -d ' '); \
  awk -v total="$$total" -v tty=$$([ -t 2 ] && echo 1 || echo 0) ' \
    /^go: downloading / { d++; if (tty) printf "\r  downloaded %d modules: %-60.60s\033[K", d, $$3 > "/dev/stderr"; next } \
    /^[^ :#]+$$/ { n++; \
      if (tty) printf "\r  compiled %d of at most %d packages: %-60.60s\033[K", n, total, $$0 > "/dev/stderr"; \
      else if (n % 50 == 0) printf "  compiled %d of at most %d packages\n", n, total > "/dev/stderr"; next } \
    { if (tty) printf "\n" > "/dev/stderr"; print > "/dev/stderr" } \
    END { if ((n || d) && tty) printf "\n" > "/dev/stderr"; if (n) printf "  packages compiled: %d\n", n > "/dev/stderr" }'
endef

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the facade against the built-in sandbox upstream (prints ready-to-paste grpcurl and curl commands).
	@echo "make run: building ./bin/plugin-facade (a cold build downloads and compiles about 300 packages; later builds take seconds)" >&2
	@go build -v -tags $(GO_TAGS) -ldflags '$(GO_LDFLAGS)' -o $(BIN)/plugin-facade ./cmd/server 2>&1 | { $(call progress,./cmd/server); }
	@echo "make run: starting ./bin/plugin-facade --sandbox (Ctrl-C stops it)" >&2
	@exec $(BIN)/plugin-facade --sandbox

.PHONY: build
build: ## Build the server binary into ./bin/plugin-facade, stamped with VERSION (default: git describe).
	go build -tags $(GO_TAGS) -ldflags '$(GO_LDFLAGS)' -o $(BIN)/plugin-facade ./cmd/server

.PHONY: test
test: check-generated lint tidy-check rules ## Run every check: generation drift, buf lint, gofmt, go mod tidy, alert rules (promtool), go test -race with go vet's analyzers.
	@echo "make test: go test -race -vet=all ./... (a cold run compiles every dependency once, with the race detector)" >&2
	go test -tags $(GO_TAGS) -vet=all $(GO_TEST_FLAGS) ./...

# The processes `make bench` and `make soak` run, built once with go build (go
# run would measure the compiler) into a temporary directory.
BENCH_PKGS := ./cmd/server ./cmd/sandbox ./internal/bench/passproxy ./internal/bench/cmd/bench ./internal/bench/cmd/soak
BENCH_FLAGS ?=
SOAK_FLAGS ?=

.PHONY: bench
bench: ## Measure direct, pass-through proxy, gRPC and gateway against the sandbox (separate processes, loopback) and write docs/benchmarks.md.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go build -tags $(GO_TAGS) -o "$$tmp/" $(BENCH_PKGS); \
	  mkdir -p docs; "$$tmp/bench" -bin "$$tmp" -out docs/benchmarks.md $(BENCH_FLAGS)

.PHONY: bench-realistic
bench-realistic: ## make bench with the sandbox 40ms away behind TLS and HTTP/2, as Confluent Cloud is; writes docs/benchmarks-realistic.md.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go build -tags $(GO_TAGS) -o "$$tmp/" $(BENCH_PKGS); \
	  mkdir -p docs; "$$tmp/bench" -bin "$$tmp" -upstream-latency 40ms -upstream-tls -micro '' -out docs/benchmarks-realistic.md $(BENCH_FLAGS)

.PHONY: soak
soak: ## About a minute at concurrency 64 with injected upstream faults; fails on a malformed answer, a crash or growth.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  go build -tags $(GO_TAGS) -o "$$tmp/" $(BENCH_PKGS); \
	  "$$tmp/soak" -bin "$$tmp" $(SOAK_FLAGS)

# `make image`: the container image of Containerfile. The binary is built here
# (static, CGO_ENABLED=0) and handed to the build with the host's CA bundle as
# the whole build context, so the build pulls no base image. The first of
# podman and docker that answers builds it, unless CONTAINER_TOOL says which;
# CONTAINER_FLAGS go before its subcommand (e.g. --storage-driver=vfs).
# The version inside (the binary's and the image label's) is IMAGE's tag when
# IMAGE has one (`make image IMAGE=registry.example.com/plugin-facade:1.2.0`
# reports 1.2.0), else VERSION. podman builds without keeping an image per
# step (--layers=false), and an image the build leaves dangling (the previous
# build of the same tag) is removed.
IMAGE           ?= plugin-facade:$(VERSION)
IMAGE_TAG       := $(lastword $(subst :, ,$(IMAGE)))
IMAGE_VERSION   := $(if $(or $(findstring /,$(IMAGE_TAG)),$(filter $(IMAGE),$(IMAGE_TAG)),$(filter latest,$(IMAGE_TAG))),$(VERSION),$(IMAGE_TAG))
IMAGE_ARCH      ?= $(shell go env GOARCH)
CA_BUNDLE       ?= /etc/ssl/certs/ca-certificates.crt
CONTAINER_TOOL  ?=
CONTAINER_FLAGS ?=
IMAGE_MAX_BYTES := 25000000

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
	ctx=$$(mktemp -d); trap 'rm -rf "$$ctx"' EXIT; \
	dangling() { $$tool $(CONTAINER_FLAGS) images -q --filter dangling=true | sort -u; }; \
	before=$$(dangling); set -x; \
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -tags $(GO_TAGS) -trimpath -ldflags '-s -w -X main.version=$(IMAGE_VERSION)' \
	  -o "$$ctx/plugin-facade" ./cmd/server; \
	cp $(CA_BUNDLE) "$$ctx/ca-certificates.crt"; \
	cp Containerfile "$$ctx/Containerfile"; \
	layers=; if [ "$$tool" = podman ]; then layers=--layers=false; fi; \
	$$tool $(CONTAINER_FLAGS) build $$layers --platform linux/$(IMAGE_ARCH) --build-arg VERSION=$(IMAGE_VERSION) \
	  -f "$$ctx/Containerfile" -t $(IMAGE) "$$ctx"; \
	set +x; \
	left=$$(comm -13 <(echo "$$before") <(dangling)); \
	if [ -n "$$left" ]; then $$tool $(CONTAINER_FLAGS) rmi $$left >/dev/null; fi; \
	size=$$($$tool $(CONTAINER_FLAGS) image inspect --format '{{.Size}}' $(IMAGE)); \
	echo "built $(IMAGE) (version $(IMAGE_VERSION)) with $$tool: $$size bytes"; \
	test "$$size" -le $(IMAGE_MAX_BYTES) || { echo "make image: $(IMAGE) is $$size bytes, over $(IMAGE_MAX_BYTES) (see docs/image.md)" >&2; exit 1; }

.PHONY: tools
tools: $(BUF) $(GRPCURL) $(OAPI_CODEGEN) ## Install the pinned buf, grpcurl and oapi-codegen into ./bin.

.PHONY: grpcurl
grpcurl: $(GRPCURL) ## Install the pinned grpcurl as ./bin/grpcurl (built from source: about two minutes cold).

.PHONY: buf
buf: $(BUF) ## Install the pinned buf as ./bin/buf (its prebuilt binary: seconds), e.g. for buf curl.

# buf is Buf's own release binary, as its npm package for this platform
# carries it (the package @bufbuild/buf installs the same one), fetched with
# npm when it is there, else with curl, and checked against the SHA-256 pinned
# here for that package's tarball. To move to another version: set
# BUF_VERSION, then `make buf-checksums` prints the lines to paste below.
BUF_VERSION := 1.75.0
BUF_SHA256_linux-x64      := 98b19d4b2b46130e083157490c54dfdcb8ea771e53204d3c6a06a2b12edd0503
BUF_SHA256_linux-aarch64  := ea5b4981ad7199a482609c3f1f7230767e095c4a5a7e96ae74a21225a1fc75dc
BUF_SHA256_darwin-x64     := c30e184dd80a5d107ac1273f4e6b86bdb503c24eb3a6267dc1b9ab8b6862f096
BUF_SHA256_darwin-arm64   := 88aad55a35d866a118bfece6b5f190d5a3508bb63147c088bdb43179c8a0b9a7
BUF_PLATFORMS := linux-x64 linux-aarch64 darwin-x64 darwin-arm64
# The npm platform name of this machine: linux-x64, darwin-arm64, ...
BUF_PLATFORM := $(subst x86_64,x64,$(subst arm64,$(if $(filter Linux,$(shell uname -s)),aarch64,arm64),$(shell uname -s | tr A-Z a-z)-$(shell uname -m)))

# fetch-buf-tarball downloads the npm tarball of buf for platform $(1) into the
# current directory as buf.tgz.
define fetch-buf-tarball
if command -v npm >/dev/null; then \
  npm pack --silent @bufbuild/buf-$(1)@$(BUF_VERSION) >/dev/null && mv bufbuild-buf-$(1)-$(BUF_VERSION).tgz buf.tgz; \
else \
  curl -fsSL -o buf.tgz https://registry.npmjs.org/@bufbuild/buf-$(1)/-/buf-$(1)-$(BUF_VERSION).tgz; \
fi
endef
SHA256 := $(shell command -v sha256sum >/dev/null && echo sha256sum || echo 'shasum -a 256')

$(BUF): Makefile
	@test -n '$(BUF_SHA256_$(BUF_PLATFORM))' || { echo "make: no pinned buf for platform $(BUF_PLATFORM) (one of: $(BUF_PLATFORMS))" >&2; exit 1; }
	@echo "installing buf $(BUF_VERSION) (prebuilt, npm @bufbuild/buf-$(BUF_PLATFORM)) into ./bin" >&2
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	  $(call fetch-buf-tarball,$(BUF_PLATFORM)); \
	  echo '$(BUF_SHA256_$(BUF_PLATFORM))  buf.tgz' | $(SHA256) -c --status || { \
	    echo "make: buf.tgz for $(BUF_PLATFORM) does not have the pinned SHA-256 $(BUF_SHA256_$(BUF_PLATFORM))" >&2; exit 1; }; \
	  tar -xzf buf.tgz package/bin/buf; \
	  mkdir -p $(BIN); mv package/bin/buf $(BUF); touch $(BUF)
	@$(BUF) --version | grep -qx '$(BUF_VERSION)'

.PHONY: buf-checksums
buf-checksums: ## Print the pinned-checksum lines for BUF_VERSION (to move buf to another version).
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	  for p in $(BUF_PLATFORMS); do $(call fetch-buf-tarball,$$p); \
	    printf 'BUF_SHA256_%-14s := %s\n' "$$p" "$$($(SHA256) buf.tgz | cut -d' ' -f1)"; rm buf.tgz; done

# Built from source, from the versions tools/go.mod pins, one at a time: only
# the tool a target needs is compiled.
$(OAPI_CODEGEN): tools/go.mod tools/go.sum
	@echo "building oapi-codegen (tools/go.mod) into ./bin: about a minute on a cold cache" >&2
	cd tools && GOBIN=$(BIN) go install github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen
	@touch $@

$(GRPCURL): tools/go.mod tools/go.sum
	@echo "building grpcurl (tools/go.mod) into ./bin: about two minutes on a cold cache" >&2
	cd tools && GOBIN=$(BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl
	@touch $@

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

# breaking compares the contract with BREAKING_AGAINST (default origin/main,
# else main), checked out into a temporary directory with git archive. The
# imported protos (google/api, google/rpc) are git-ignored, so that tree lacks
# them: this checkout's copy (third_party/, from `make protos`) is added to it
# where the ref has none of its own. Only proto/ is compared (buf.yaml ignores
# third_party/ for breaking).
BREAKING_AGAINST ?= $(shell git rev-parse -q --verify origin/main >/dev/null && echo origin/main || echo main)

.PHONY: breaking
breaking: $(BUF) protos ## buf breaking (FILE) of proto/ against BREAKING_AGAINST (default origin/main, else main).
	@git rev-parse -q --verify '$(BREAKING_AGAINST)^{commit}' >/dev/null || { echo "make breaking: no commit $(BREAKING_AGAINST) to compare with (set BREAKING_AGAINST)" >&2; exit 1; }
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  git archive '$(BREAKING_AGAINST)' | tar -x -C "$$tmp"; \
	  if [ ! -e "$$tmp/third_party" ]; then cp -R third_party "$$tmp"/; fi; \
	  echo "buf breaking against $(BREAKING_AGAINST) ($$(git rev-parse --short '$(BREAKING_AGAINST)'))"; \
	  $(BUF) breaking --against "$$tmp"

# The alert rules live in a PrometheusRule (for the Prometheus Operator); its
# spec, unindented, is an ordinary rule file, which promtool checks and runs
# the unit tests of rules_test.yaml and rules_slow_test.yaml against. promtool is Debian's prometheus
# package (.ci/run installs it), or any Prometheus release's.
MONITORING := deploy/kubernetes/components/monitoring

.PHONY: rules
rules: ## promtool check rules and promtool test rules on the alert rules (deploy/kubernetes/components/monitoring).
	@command -v promtool >/dev/null || { echo "make rules: no promtool: install it (Debian/Ubuntu: apt-get install prometheus)" >&2; exit 1; }
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  sed -n '/^spec:$$/,$$p' $(MONITORING)/prometheusrule.yaml | sed '1d; s/^  //' > "$$tmp/rules.yaml"; \
	  cp $(MONITORING)/rules_test.yaml $(MONITORING)/rules_slow_test.yaml "$$tmp/"; \
	  promtool check rules "$$tmp/rules.yaml"; \
	  promtool test rules "$$tmp/rules_test.yaml" "$$tmp/rules_slow_test.yaml"

.PHONY: vet
vet: ## go vet (make test runs the same analyzers through go test -vet=all).
	go vet -tags $(GO_TAGS) ./...

.PHONY: tidy-check
tidy-check: ## Fail if go.mod or go.sum (of the service, of the client module gen/ or of tools/) are not tidy.
	go mod tidy -diff
	cd gen && go mod tidy -diff
	cd tools && go mod tidy -diff

.PHONY: clean
clean: ## Remove installed tools and copied protos.
	rm -rf $(BIN) third_party
