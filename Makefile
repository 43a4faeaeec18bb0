# redial: `make demo` runs the demo, `make test` the tests, `make bench` the
# benchmarks. Each installs what it needs first (scripts/deps.sh).
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
CORE := ./internal/...
# Integration tests share the machine's two cores with SIPp and redis-server.
TESTFLAGS ?= -race -timeout 9m -p 2

.PHONY: deps build demo test vet bench fmt
deps:
	@scripts/deps.sh

build: deps
	$(GO) build -o bin/redial ./cmd/redial

demo: build
	bin/redial demo

vet:
	@test -z "$$(gofmt -l cmd internal)" || (echo "gofmt needed:"; gofmt -l cmd internal; exit 1)
	$(GO) vet ./...

test: deps vet
	$(GO) test $(TESTFLAGS) ./...

bench: build
	$(GO) run ./bench/cmd/bench -out docs/benchmarks.md
