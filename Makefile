# Targets a new user and CI run. `make test` is the README's test command and
# what .ci/run calls.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 5s
BENCHTIME ?= 200ms

.PHONY: all build test vet fuzz bench bench-relay lint demo setup clean

all: build

# build: every command (sframe, moq-relay, sframe-sidecar, sframe-cs) into bin/.
build:
	$(GO) build -o bin/ ./cmd/...

setup:
	./scripts/setup.sh

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags purego $(PKGS)

# test: vet, the race-enabled suite (fuzz seed corpora run as tests), the
# pure-Go build (without the process-level integration tests, which build
# their commands without the purego tag and ran in the race pass), a short fuzz run of every fuzz target, and every example of
# the README as written (scripts/readme.sh).
test: setup vet
	$(GO) test -race -count=1 -timeout 25m $(PKGS)
	$(GO) test -count=1 -run Allocs $(PKGS)
	$(GO) test -count=1 -timeout 25m -tags purego $$($(GO) list $(PKGS) | grep -v /integration)
	./scripts/fuzz.sh $(FUZZTIME)
	./scripts/readme.sh

fuzz:
	./scripts/fuzz.sh 2m

# bench: the sframe bench table (every path, suite, size and batch, with
# ratios to Go's AES-GCM measured in the same run), the AES-GCM ratio
# benchmark (x-stdlib per path, size and batch), then the go test benchmarks
# of the bench and key schedule packages.
bench:
	$(GO) run ./cmd/sframe bench
	$(GO) test -run '^$$' -bench SealRatio -benchtime $(BENCHTIME) ./asm/aesgcm/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./bench/ ./keyschedule/

# bench-relay: relay throughput through a moq-relay process, with x-direct
# (relay / direct publisher -> subscriber, same run). Not part of bench: it
# builds the relay binary and the whole integration package.
bench-relay:
	$(GO) test -run '^$$' -bench RelayThroughput ./integration/

lint:
	test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	$(GO) vet $(PKGS)
	./scripts/staticcheck.sh $(PKGS)

demo: setup
	./scripts/demo.sh

clean:
	rm -rf bin
