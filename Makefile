# redial: `make demo` runs the demo, `make test` the tests, `make bench` the
# benchmarks, `make chaos` the fault suite (and the fuzz targets). Each
# installs what it needs first (scripts/deps.sh).
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
CORE := ./internal/...
# Integration tests share the machine's two cores with SIPp and redis-server.
TESTFLAGS ?= -race -timeout 12m -p 2

.PHONY: deps build demo test vet bench fmt chaos
deps:
	@scripts/deps.sh

build: deps
	$(GO) build -o bin/redial ./cmd/redial

demo: build
	bin/redial demo --stay 30m

vet:
	@test -z "$$(gofmt -l cmd internal)" || (echo "gofmt needed:"; gofmt -l cmd internal; exit 1)
	$(GO) vet ./...

test: deps vet
	$(GO) test $(TESTFLAGS) ./...

bench: build
	$(GO) run ./bench/cmd/bench -out docs/benchmarks.md

# The fault-injection suite (internal/chaos, build tag chaos): real Redis,
# Sentinel and Cluster, SIPp and `redial serve` processes; writes
# docs/reliability.md. Then the fuzz targets for a bounded time each.
CHAOSFLAGS ?= -timeout 60m -count=1 -v
# The fuzz targets run even when a scenario failed; the target fails if
# either did.
chaos: deps
	@status=0; \
	CHAOS_REPORT=$(CURDIR)/docs/reliability.md $(GO) test -tags chaos $(CHAOSFLAGS) ./internal/chaos/... || status=1; \
	test ! -x scripts/fuzz.sh || scripts/fuzz.sh || status=1; \
	exit $$status
