# responder: see README.md. `make run` starts it on the examples; `make test` runs every test.
GO        ?= go
BIN       := bin/responder
PKG       := github.com/prometheus/common/version
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X $(PKG).Version=$(VERSION) -X $(PKG).Revision=$(REVISION) -X $(PKG).Branch=main -X $(PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
FUZZTIME  ?= 4s
# package:FuzzTarget pairs run briefly by `make test` (and longer with `make fuzz FUZZTIME=1m`).
FUZZ      := ./source/alertmanager:FuzzDecode ./source/alertmanager:FuzzPayloadDecode ./rules:FuzzParse ./rules:FuzzIndex ./config:FuzzParse ./config:FuzzProbes \
             ./notify/slack:FuzzVerify ./notify/slack:FuzzCommand ./notify/slack:FuzzInteraction ./source/probe:FuzzRedisReply \
             ./engine:FuzzMatch ./alert:FuzzJSONDecode ./alert:FuzzJSONEncode
LISTEN    ?= 127.0.0.1:9095

.PHONY: all build run sink test test-go fuzz lint bench deps db-start db-stop clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/responder

deps:
	scripts/ensure-deps.sh

db-start: deps
	scripts/dev-postgres.sh start

db-stop:
	scripts/dev-postgres.sh stop

# make run: a throwaway PostgreSQL on 127.0.0.1:5433 (data/postgres) and responder with its
# embedded JetStream (data/jetstream) on the example config and rules.
run: build db-start
	@echo "responder: webhook http://$(LISTEN)/webhook/alertmanager (token: examples/secrets/webhook-token)"
	@echo "           API     http://$(LISTEN)/api/v1/actions  (token: examples/secrets/api-token)"
	@echo "           console http://$(LISTEN)/ui/  (alice / alice-dev-password may decide; bob / bob-dev-password may look)"
	$(BIN) serve --config.file=examples/responder.yml --storage.path=data --web.listen-address=$(LISTEN)

# make sink: a local HTTP sink on 127.0.0.1:9999 for the example rules' http.request actions.
sink:
	python3 scripts/sink.py 9999

# The test tools built from the Go module proxy in tools modules of their own and cached by version
# outside the repository: Alertmanager (tools/alertmanager), the Kubernetes control plane
# (tools/kube: etcd, kube-apiserver, controller-manager, scheduler, kwok), helm (tools/helm),
# nats-server for the JetStream cluster tests (tools/natsserver) and the PromQL name extractor
# (tools/promql). They are built first, each in its own step: cold, they take minutes (the control
# plane about 12 on 2 cores, nats-server about 3), and that must not eat the test timeout.
# `make lint` (go vet included) runs first, so a lint failure is quick.
test:
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory deps
	$(GO) test -count=1 -timeout 30m -run '^TestBinary$$' ./source/alertmanager/amtest
	$(GO) test -count=1 -timeout 45m -run '^TestBinaries$$' -v ./handlers/k8s/k8stest
	$(GO) test -count=1 -timeout 30m -run '^TestBinary$$' ./deploy/helmtest
	$(GO) test -count=1 -timeout 30m -run '^TestBinary$$' ./bus/clustertest
	cd tools/promql && GOWORK=off $(GO) test -count=1 ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz

fuzz:
	@set -e; for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s $$pkg; done

# make lint: go vet, gofmt and golangci-lint (.golangci.yml) at the version pinned in tools/lint,
# built once and cached by version beside the Go build cache (scripts/golangci-lint.sh).
lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	scripts/golangci-lint.sh run ./...

# make bench: Go micro-benchmarks, then the end-to-end load harness (see README "Performance").
# The micro-benchmarks' output goes to bin/go-bench.txt, which the harness reads (BenchmarkProcess,
# BenchmarkMatch1000) for its summary; the summary is written to bin/bench.json and compared with the
# previous run's (bin/bench-prev.json). The scaling phase runs a 3-node JetStream cluster of the
# pinned nats-server (bus/clustertest), built and cached first, as `make test` does (cold, about 3
# minutes). BENCH_FLAGS passes flags to the harness, e.g.
# BENCH_FLAGS='--phases storm --cpuprofile bin/storm.prof'.
bench: SHELL := bash
bench: .SHELLFLAGS := -o pipefail -ec
bench: db-start
	@mkdir -p bin
	$(GO) test -count=1 -timeout 30m -run '^TestBinary$$' ./bus/clustertest
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./rules/ ./source/alertmanager/ ./bus/ ./engine/ | tee bin/go-bench.txt
	@if [ -f bin/bench.json ]; then mv bin/bench.json bin/bench-prev.json; fi
	$(GO) run ./cmd/responder-bench --go-bench bin/go-bench.txt --json bin/bench.json \
	  $$([ -f bin/bench-prev.json ] && echo --compare bin/bench-prev.json) $(BENCH_FLAGS)

clean:
	rm -rf bin data
