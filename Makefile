# incuslb — see README.md. `make test` runs everything CI runs.
GO        ?= go
BIN       := bin/incuslb
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s

.PHONY: all build test unit fuzz lint deps demo demo-clean demo-render clean incus-env pebble-env e2e bench cluster-env e2e-cluster

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/incuslb

## deps: install what the unit tests need (the real haproxy, for haproxy -c).
deps:
	@command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }

## test: everything CI runs: set up Incus, lint, unit tests (goldens checked
## by real haproxy -c), a short fuzz run, the e2e suite on real Incus, and
## the cluster e2e suite on a nested 3-member Incus cluster.
test: incus-env lint unit fuzz e2e e2e-cluster

unit:
	$(GO) test -race -count=1 ./...

## fuzz: a short run of each fuzz target (FUZZTIME each).
fuzz: deps
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./specs
	$(GO) test -run='^$$' -fuzz='^FuzzValidateRender$$' -fuzztime=$(FUZZTIME) ./haproxy

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## demo: the local demo: Incus, the HAProxy container, labelled backends, traffic.
demo:
	bash hack/demo.sh

## demo-clean: delete the demo's instances and project.
demo-clean:
	-incus --project incuslb-demo list --format csv -c n | xargs -r -n1 incus --project incuslb-demo delete --force
	-incus project delete incuslb-demo

## demo-render: render the seed example with sample members (no Incus needed).
demo-render: build
	$(BIN) render -f specs/examples/edge.yaml --members specs/examples/members/edge.yaml

clean:
	rm -rf bin

## incus-env: install and start Incus, the bridge and the HAProxy image (idempotent).
incus-env:
	bash hack/incus-env.sh

## e2e: the end-to-end suite on real Incus and real HAProxy, once with each
## LB image: Debian 12's HAProxy 2.6 and Debian 13's HAProxy 3.0.
## pebble-env: Pebble (a local ACME CA) and its DNS on 127.0.0.1, for the
## ACME e2e (hack/pebble.sh).
pebble-env:
	bash hack/pebble.sh up

E2E_IMAGES ?= lb-haproxy lb-haproxy-30
e2e: incus-env pebble-env
	bash hack/sweep.sh
	@for img in $(E2E_IMAGES); do \
	  echo "== e2e suite with LB image $$img"; \
	  INCUSLB_E2E_IMAGE=$$img $(GO) test -v -tags e2e -count=1 -timeout 45m ./e2e/ -ginkgo.v \
	    -ginkgo.json-report=$(CURDIR)/.cache/e2e-$$img.json \
	    || { $(GO) run ./hack/e2efail .cache/e2e-$$img.json; exit 1; }; \
	done

## cluster-env: a real 3-member Incus cluster of nested containers on this
## machine (hack/cluster.sh; the member image is cached under .cache/nest).
cluster-env: incus-env
	bash hack/cluster.sh up

## e2e-cluster: the e2e suite on that cluster (an LB pair spread over two
## members, a member hard-killed and back).
e2e-cluster: cluster-env
	INCUS_CONF=$(CURDIR)/.cache/nest/incus-conf $(GO) test -v -tags cluster -count=1 -timeout 20m ./e2e/cluster/ -ginkgo.v \
	  -ginkgo.json-report=$(CURDIR)/.cache/e2e-cluster.json \
	  || { $(GO) run ./hack/e2efail .cache/e2e-cluster.json; exit 1; }

## bench: the benchmarks of BENCHMARKS.md: Go benchmarks on a fake Incus of
## 10,000 instances, then the harness on real Incus (prints a table).
bench: incus-env
	bash hack/sweep.sh
	$(GO) test -run='^$$' -bench=. -benchtime=50x ./controller ./haproxy
	$(GO) run ./e2e/bench
