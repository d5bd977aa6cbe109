# pgflo — make demo runs the main job on a throwaway PostgreSQL and the
# embedded JetStream; make test runs every test against real servers.
GO ?= go
BIN ?= ./pgflo
export CGO_ENABLED ?= 0

.PHONY: build demo test test-unit test-e2e lint-resources vet fmt-check docs bench bench-processors bench-snapshot bench-apply bench-partitions bench-latency chaos clean

build:
	$(GO) build -o $(BIN) .

demo: build
	$(GO) run ./cmd/demo --bin $(BIN)

# The README's test command: formatting, vet, every package's tests (the
# concurrent engines with the race detector), resources linted and unit-tested.
test: fmt-check vet build lint-resources
	$(GO) test -count=1 -timeout 20m ./...
	CGO_ENABLED=1 $(GO) test -count=1 -race -timeout 10m ./internal/replication/ ./internal/jsproto/ ./internal/state/ ./internal/source/ ./internal/consumer/ ./internal/apply/ ./internal/shutdown/ ./inputs/ ./outputs/
	$(GO) test -run XXX -fuzz FuzzAppendString -fuzztime 20000x -parallel 1 ./internal/event/
	$(GO) test -run XXX -fuzz FuzzDecodeChange -fuzztime 20000x -parallel 1 ./internal/replication/
	$(GO) test -run XXX -fuzz FuzzParseArray -fuzztime 20000x -parallel 1 ./internal/pgvalue/
	$(GO) test -run XXX -fuzz FuzzParseRange -fuzztime 20000x -parallel 1 ./internal/pgvalue/
	$(GO) test -run XXX -fuzz FuzzReadersAgree -fuzztime 20000x -parallel 1 ./internal/event/
	$(GO) test -run XXX -fuzz FuzzTokenize -fuzztime 20000x -parallel 1 ./internal/ddl/
	$(GO) test -run XXX -fuzz FuzzExpand -fuzztime 20000x -parallel 1 ./internal/copypack/
	$(GO) test -run XXX -fuzz FuzzAppendRows -fuzztime 20000x -parallel 1 ./internal/pgvalue/
	$(GO) test -run XXX -fuzz FuzzAppendCopyText -fuzztime 20000x -parallel 1 ./internal/pgvalue/
	$(GO) test -run XXX -fuzz FuzzRedact -fuzztime 20000x -parallel 1 ./internal/pgdsn/
	$(GO) test -run XXX -fuzz FuzzLoad -fuzztime 20000x -parallel 1 ./internal/rules/
	$(GO) test -run XXX -fuzz FuzzLoad -fuzztime 20000x -parallel 1 ./internal/routing/
	$(GO) test -run XXX -fuzz FuzzConfigFile -fuzztime 20000x -parallel 1 ./config/

lint-resources: build
	$(BIN) lint resources/*.yaml
	$(BIN) test ./resources/...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

docs:
	$(GO) run ./internal/docgen/cmd

# The NATS servers bench, bench-snapshot, bench-apply and bench-latency measure pgflo against, each in every run: r1 (one
# `pgflo nats`) and stock (one stock nats-server, default configuration, built from the version go.mod names).
# Also: r1-sync (one `pgflo nats`, sync_interval: always), r3 or r3-sync (a three-server cluster, replicas 3;
# r3-sync with sync_interval: always); several comma-separated.
NATS ?= r1,stock

bench: build
	$(GO) run ./bench --bin $(BIN) --nats $(NATS) --out bench/results/stream.md

# Worker processors on one core: decode → rules → route next to a Bloblang mapping.
bench-processors:
	$(GO) run ./bench/processors --out bench/results/processors.md

bench-snapshot: build
	$(GO) run ./bench/snapshot --bin $(BIN) --nats $(NATS) --out bench/results/snapshot.md

# pg_flo_postgres: initial sync and backlog catch-up next to COPY pipes and
# native logical replication, three runs against each NATS and their medians
# (about 3.5 min per NATS).
bench-apply: build
	$(GO) run ./bench/apply --bin $(BIN) --nats $(NATS) --out bench/results/apply.md

# A backlog applied by 1, 2, 4 and 8 partitions and workers, the target behind
# a proxy adding 2 ms each way; three runs, minimum and median.
bench-partitions: build
	$(GO) run ./bench/partitions --bin $(BIN) --out bench/results/partitions.md

# Per-row latency under a steady pgbench load (50 tx/s × 1 row, 500 and 1,000
# tx/s × 10 rows, 20 s each, three runs): native logical replication, pgflo
# into pg_flo_postgres and into a file, side by side (about 7 min per NATS).
bench-latency: build
	$(GO) run ./bench/latency --bin $(BIN) --nats $(NATS) --out bench/results/latency.md

# The fault campaign (docs/chaos.md): FAULTS faults drawn from SEED (a new
# one each run when unset, printed) against CHAOS_NATS=single (one
# nats-server) or CHAOS_NATS=cluster (three, replicas 3).
# make test runs a short one with a fixed seed (tests/chaos_test.go).
FAULTS ?= 50
SEED ?= 0
CHAOS_NATS ?= single

chaos: build
	$(GO) run ./cmd/chaos --bin $(BIN) --seed $(SEED) --faults $(FAULTS) --nats $(CHAOS_NATS)

clean:
	rm -f $(BIN)
