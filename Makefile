# Kiln's developer entry points. `make test` is the command CI runs.
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build test race check bench

build:
	$(GO) build -o kiln ./cmd/kiln

# The whole suite: vet, unit + acceptance tests, and the race detector on the
# concurrent parts. Needs root (sandboxes use cgroups), python3, node and the
# AWS CLI; .ci/run installs what is missing.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	# The sandbox init has a C fast path (cgo) and a pure-Go fallback: test both.
	CGO_ENABLED=0 $(GO) test -count=1 -timeout 10m ./internal/sandbox/... ./test/hostile/
	$(GO) test -count=1 -race -timeout 10m ./internal/counting/... ./internal/workermgr/... ./internal/worker/... ./internal/logstore/... ./internal/runtimeapi/... ./internal/consensus/...

check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench:
	$(GO) test -run '^$$' -bench 'WarmInvoke|WarmThroughput' -benchtime 5000x ./test/bench/
	$(GO) test -run '^$$' -bench 'ColdStart' -benchtime 50x ./test/bench/
