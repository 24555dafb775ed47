# Hubbub. `make run` runs the chat; `make test` runs every test (installing or
# building what it needs first). See README.md.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN        := $(CURDIR)/bin
GO         ?= go
# Hubbub itself (what ships, its tests, its linters) builds with go.mod's
# toolchain line, a patched Go the module proxy serves: these machines run
# their own Go with GOTOOLCHAIN=local, which ignores that line, so it is set
# here. The tools under hack/ build with the machine's Go (none ships).
GO_TOOLCHAIN := $(shell sed -n 's/^toolchain //p' go.mod)
GOMAIN     := GOTOOLCHAIN=$(GO_TOOLCHAIN) $(GO)
IMG        ?= hubbub:dev
# Tool binaries built from Go modules under hack/ (nothing is downloaded from release sites).
CONTROLLER_GEN := $(BIN)/controller-gen
STATICCHECK    := $(BIN)/staticcheck
HELM           := $(BIN)/helm
PROMTOOL       := $(BIN)/promtool
ENVTEST_DIR    := $(BIN)/k8s
export KUBEBUILDER_ASSETS := $(ENVTEST_DIR)
export HUBBUB_HELM := $(HELM)
export HUBBUB_PROMTOOL := $(PROMTOOL)
GOTEST_FLAGS ?= -race -count=1 -timeout 25m

# gotest runs go test on packages; a failed run ends with a summary of its data
# races, because CI keeps only the tail of the output and a race report's tail
# names neither of the racing accesses.
TEST_LOG := $(BIN)/test.log
define gotest
@mkdir -p $(BIN)
$(GOMAIN) test $(GOTEST_FLAGS) $(1) 2>&1 | tee $(TEST_LOG) || { hack/race-summary.sh $(TEST_LOG); exit 1; }
endef

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n",$$1,$$2}'

##@ Everyday

.PHONY: run
run: ## run the chat on http://localhost:8080 (embedded store, data kept in ./data)
	$(GOMAIN) run ./cmd/chatserver --data-dir=./data $(ARGS)

.PHONY: build
build: ## build bin/chatserver, bin/operator and bin/hubbub-bench
	CGO_ENABLED=0 $(GOMAIN) build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: test
test: deps tools verify lint ## every test: unit, Redis, envtest, Helm, browser, then the kind e2e (installs what is missing)
	$(call gotest,$$($(GOMAIN) list ./... | grep -v '/test/ha$$'))
	@# Failovers are timed by the sentinels' clocks: test/ha gets the machine to itself.
	$(call gotest,./test/ha)
	@$(MAKE) --no-print-directory kind-e2e

.PHONY: test-short
test-short: ## fast unit tests only (no Redis, Kubernetes or browser)
	$(GOMAIN) test -short -race ./...

.PHONY: lint
lint: $(STATICCHECK) ## gofmt, go vet, staticcheck, govulncheck
	@out="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GOMAIN) vet ./...
	$(GOMAIN) vet -tags e2e,kind ./test/...
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e,kind ./test/...
	@$(MAKE) --no-print-directory vulncheck

.PHONY: bench
bench: ## in-process benchmarks (frame decoding, fan-out)
	$(GOMAIN) test -run '^$$' -bench . -benchmem ./chatserver/...

# Centrifugo is the load tool's third target (`hubbub-bench run --target
# centrifugo`, docs/benchmarks.md), built from its Go module pinned in
# hack/centrifugo as its release is (CGO off, version stamped without the v).
# A tool like the others: the load tool's smoke test runs it (about 2 minutes
# to build the first time, cached after).
CENTRIFUGO := $(BIN)/centrifugo

$(CENTRIFUGO): hack/centrifugo/go.mod hack/centrifugo/go.sum
	cd hack/centrifugo && CGO_ENABLED=0 $(GO) build -trimpath -o $(CENTRIFUGO) \
		-ldflags "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=$$($(GO) list -m -f '{{.Version}}' github.com/centrifugal/centrifugo/v6 | sed 's/^v//')" \
		github.com/centrifugal/centrifugo/v6

.PHONY: centrifugo
centrifugo: $(CENTRIFUGO) ## build bin/centrifugo (hack/centrifugo), the third target of hubbub-bench

.PHONY: fuzz
fuzz: ## fuzz the WebSocket frame decoders (client JSON frames, control frames) for FUZZTIME each (default 30s)
	$(GOMAIN) test -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-30s} ./chatserver/protocol
	$(GOMAIN) test -run '^$$' -fuzz FuzzControlFrame -fuzztime $${FUZZTIME:-30s} ./chatserver/wsconn

##@ Supply chain (see docs/supply-chain.md)

# govulncheck reads a vulnerability database built offline from the pinned
# golang.org/x/vulndb module (hack/govulncheck). It checks the Go that builds
# Hubbub (GO_TOOLCHAIN), and is built by it: it type-checks that standard
# library. A reachable vulnerability fails lint.
GOVULNCHECK := $(BIN)/govulncheck
INDEXDB     := $(BIN)/indexdb
VULNDB      := $(BIN)/vulndb

$(GOVULNCHECK) $(INDEXDB) &: hack/govulncheck/go.mod hack/govulncheck/go.sum
	cd hack/govulncheck && $(GOMAIN) build -trimpath -o $(BIN)/ golang.org/x/vuln/cmd/govulncheck golang.org/x/vulndb/cmd/indexdb
	@touch $(GOVULNCHECK) $(INDEXDB)

.PHONY: vulncheck
vulncheck: $(GOVULNCHECK) $(INDEXDB) ## govulncheck ./... at go.mod's toolchain, offline; fails on a reachable vulnerability
	@hack/govulncheck/db.sh $(INDEXDB) $(VULNDB)
	GOTOOLCHAIN=$(GO_TOOLCHAIN) $(GOVULNCHECK) -db file://$(VULNDB) ./...

##@ Dependencies

.PHONY: deps
deps: ## install redis-server and chromium when missing (Debian/apt)
	@hack/ensure-deps.sh

.PHONY: tools
tools: $(CONTROLLER_GEN) $(STATICCHECK) $(HELM) $(PROMTOOL) $(CENTRIFUGO) envtest ## build every tool binary into bin/

$(STATICCHECK) $(CONTROLLER_GEN): hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && $(GOMAIN) build -o $(BIN)/ honnef.co/go/tools/cmd/staticcheck sigs.k8s.io/controller-tools/cmd/controller-gen
	@touch $(STATICCHECK) $(CONTROLLER_GEN)

##@ Operator (section owned by the operator work)

.PHONY: envtest
envtest: ## build kube-apiserver and etcd for envtest into bin/k8s (cold: ~8 min)
	@hack/k8s/build.sh $(ENVTEST_DIR)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## deepcopy code from the API types
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## CRD and RBAC from markers; both copied into the chart
	$(CONTROLLER_GEN) crd rbac:roleName=hubbub-operator paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	@$(MAKE) --no-print-directory chart-sync >/dev/null

.PHONY: verify
verify: generate manifests ## fail when generated files are stale
	@if [ -n "$$(git status --porcelain -- api config/crd config/rbac charts/hubbub/crds charts/hubbub/files)" ]; then \
		echo "generated files are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config/crd config/rbac charts/hubbub/crds charts/hubbub/files; exit 1; fi

.PHONY: run-operator
run-operator: ## run the operator against the current kubeconfig (CRD: kubectl apply -k config/crd)
	$(GOMAIN) run ./cmd/operator --leader-elect=false --chat-image=$(IMG) $(ARGS)

.PHONY: bench-operator
bench-operator: envtest ## 1,000 ChatRooms converging on the envtest API server (time, operator memory)
	$(GOMAIN) test -run '^$$' -bench BenchmarkConverge1000 -benchtime 1x -timeout 30m ./test/operatorbench

##@ Shipping (section owned by the Helm/image work)

# Helm's own release build stamps, through ldflags, its version and the
# Kubernetes version that `helm template` and `helm lint` assume (v1.20 when
# unset, which fails the chart's kubeVersion); both are read from hack/helm/go.mod.
HELM_LDFLAGS = -s -w -X helm.sh/helm/v3/internal/version.version=$$($(GO) list -m -f '{{.Version}}' helm.sh/helm/v3) \
	$$(minor=$$($(GO) list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2); \
	  for p in pkg/chartutil pkg/lint/rules; do echo "-X helm.sh/helm/v3/$$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$$p.k8sVersionMinor=$$minor"; done)

$(HELM): hack/helm/go.mod hack/helm/go.sum
	cd hack/helm && $(GO) build -ldflags "$(HELM_LDFLAGS)" -o $(HELM) helm.sh/helm/v3/cmd/helm

.PHONY: helm
helm: $(HELM) ## build helm into bin/

# promtool checks and unit-tests the chart's alerting rules (test/chart); it
# needs no service discovery, whose cloud SDKs would triple its build time.
$(PROMTOOL): hack/promtool/go.mod hack/promtool/go.sum
	cd hack/promtool && CGO_ENABLED=0 $(GO) build -tags remove_all_sd -o $(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool

.PHONY: chart-sync
chart-sync: ## copy the generated CRD and operator rules into the chart (test/chart checks they match)
	@mkdir -p charts/hubbub/crds charts/hubbub/files
	cp config/crd/bases/*.yaml charts/hubbub/crds/
	cp config/rbac/role.yaml charts/hubbub/files/operator-role.yaml

.PHONY: docker-build
docker-build: ## build the container image IMG from the Dockerfile (needs Docker and a registry; offline: make kind-images)
	docker build -t $(IMG) .

##@ kind (a real cluster, built offline; see docs/install.md)

.PHONY: kind-e2e
kind-e2e: ## the users' whole path on real pods in a fresh kind cluster (builds and caches what it needs; cold ~25 min)
	@hack/kind/e2e.sh

.PHONY: kind-up
kind-up: ## a local kind cluster with Hubbub and a sample room; prints how to open the page
	@hack/kind/up.sh up

.PHONY: kind-down
kind-down: ## delete the kind-up cluster and stop the Docker daemon the scripts started
	@hack/kind/up.sh down

.PHONY: kind-images
kind-images: ## build (or find cached) the kind node image and the Hubbub and Redis images
	@hack/kind/docker.sh start
	@hack/kind/node/build.sh
	@hack/kind/images.sh hubbub
	@hack/kind/images.sh redis
