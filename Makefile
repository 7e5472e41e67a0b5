# Entry points for building, running and testing vault-plugin-jwt-rotor.
#
#   make dev        start a local Vault dev server with the plugin mounted at jwt/
#   make dev-stop   stop it
#   make test       unit tests, the model-based test (MODEL_BUDGET), acceptance
#                   tests against a real Vault server, the Terraform provider's
#                   tests, benchmarks run once, fuzz targets briefly, lint,
#                   go mod verify and govulncheck
#   make soak       the model-based test for SOAK (default 30m)
#   make plugin     build the plugin into bin/plugins/vault-plugin-jwt-rotor_<VERSION>
#   make release    the plugin for linux/amd64, linux/arm64 and darwin/arm64 and
#                   the Terraform provider, reproducible, with SHA256SUMS, in
#                   bin/release/<VERSION>/
#   make provider   build the Terraform provider into bin/terraform-provider-jwtrotor
#   make testprovider  the provider's tests: real Terraform against a real Vault
#   make provider-docs regenerate terraform-provider-jwtrotor/docs (terraform-plugin-docs)
#   make fuzz       each fuzz target for FUZZTIME (default 60s)
#   make vulncheck  govulncheck against a database built offline from golang.org/x/vulndb
#   make mutation   mutation score of the code that decides safety (not part
#                   of make test; tens of minutes; docs/testing.md)
#   make model-check  each regression in testdata/model-check/ applied to a
#                   scratch copy and caught by the model test in every one of
#                   RUNS runs (not part of make test; hours; docs/testing.md)
#
# bin/vault is built once from the pinned tools module (several minutes the
# first time); remove it (make distclean) to rebuild it. The sink tests
# (root package and acceptance) run real stores: bin/versitygw, an S3
# gateway built the same way from tools/versitygw (make versitygw, about
# four minutes the first time), bin/fake-gcs-server, a Cloud Storage
# emulator built from tools/fake-gcs-server (make fake-gcs-server),
# Debian's apache2 with mod_dav (make apache2 installs it when missing), and
# Azurite's Blob service (make azurite installs it with npm into
# bin/azurite).

GO          ?= go
# go.mod pins the toolchain (a patch release with the standard library's
# security fixes); auto lets the go command fetch it through the module proxy
# even where the machine's go env says local.
export GOTOOLCHAIN := auto
# The tag of HEAD, or the next release's development version
# (scripts/version.sh); computed once per make.
ifndef VERSION
VERSION := $(shell scripts/version.sh)
endif
PLUGIN_NAME := vault-plugin-jwt-rotor
MODULE      := github.com/jwt-rotor/vault-plugin-jwt-rotor
# The version is in the file name, so a new build never replaces the file a
# running Vault registered (its sha256 would stop matching: a reload fails
# and the mount answers 500 until the old file is back).
PLUGIN_BIN  := bin/plugins/$(PLUGIN_NAME)_$(VERSION)
VAULT_BIN   := bin/vault
VERSITYGW_BIN := bin/versitygw
# Azurite, the Azure Storage emulator, for the azure_blob sink tests. 3.35.0
# is the last release that runs on Node 20 (3.36 needs Node 21).
AZURITE_VERSION := 3.35.0
AZURITE_BIN     := bin/azurite/node_modules/.bin/azurite-blob
FAKEGCS_BIN     := bin/fake-gcs-server
# The Terraform provider is a Go module of its own; the plugin's go.mod does
# not depend on it.
PROVIDER_DIR := terraform-provider-jwtrotor
PROVIDER_BIN := bin/terraform-provider-jwtrotor

# Extra flags: make testunit UNIT_FLAGS=-race, make testacc ACC_FLAGS='-v -run JWKS'.
UNIT_FLAGS  ?=
ACC_FLAGS   ?=
ACC_TIMEOUT ?= 30m
BENCHTIME   ?= 1s
# make fuzz runs each fuzz target for FUZZTIME; make test runs each for
# TEST_FUZZTIME. FUZZ_FLAGS bounds the minimization of each new input (Go's
# default minute would stall short runs); add -parallel=1 to use one core.
FUZZTIME      ?= 60s
TEST_FUZZTIME ?= 3s
FUZZ_FLAGS    ?= -fuzzminimizetime=10s

# The model-based test (model_test.go) runs in its own step, for a budget.
MODEL_BUDGET ?= 2m
SOAK         ?= 30m

UNIT_CMD  := $(GO) test -count=1 -skip '^TestModel$$' $(UNIT_FLAGS) ./...

# The acceptance tests start Vault through testserver/, a module of its own
# that the provider's tests use too; its own tests run first.
ACC_CMD  := cd testserver && $(GO) test -count=1 ./... && cd ../tests && $(GO) test -count=1 -timeout $(ACC_TIMEOUT) $(ACC_FLAGS) ./...

.PHONY: all vault versitygw fake-gcs-server apache2 azurite plugin release reprocheck docs-deps dev dev-stop test testunit testmodel soak testacc bench benchcheck fmt vet lint clean distclean
.PHONY: fuzz modverify vulncheck provider testprovider provider-docs mutation model-check

all: plugin

vault: $(VAULT_BIN)

# A file target with no prerequisites: built only when missing.
$(VAULT_BIN):
	@mkdir -p bin
	cd tools/vault && $(GO) build -tags minimal -o ../../$(VAULT_BIN) github.com/hashicorp/vault

versitygw: $(VERSITYGW_BIN)

# Like bin/vault: built only when missing, from the version tools/versitygw pins.
$(VERSITYGW_BIN):
	@mkdir -p bin
	cd tools/versitygw && $(GO) build -o ../../$(VERSITYGW_BIN) github.com/versity/versitygw/cmd/versitygw

azurite: $(AZURITE_BIN)

# Like bin/versitygw: installed only when missing, exactly the pinned
# version, with no lock file (bin/ is not committed).
$(AZURITE_BIN):
	@mkdir -p bin/azurite
	npm install --prefix bin/azurite --no-audit --no-fund --no-package-lock --save-exact azurite@$(AZURITE_VERSION)

fake-gcs-server: $(FAKEGCS_BIN)

# The Cloud Storage emulator of the sink tests, built like bin/versitygw from
# the version tools/fake-gcs-server pins.
$(FAKEGCS_BIN):
	@mkdir -p bin
	cd tools/fake-gcs-server && $(GO) build -o ../../$(FAKEGCS_BIN) github.com/fsouza/fake-gcs-server

# Apache httpd with mod_dav, the WebDAV store of the sink tests, from
# Debian's packages when missing (testserver/webdav.go writes its own
# configuration and runs it in the foreground; no service is started).
apache2:
	@[ -x /usr/sbin/apache2 ] || { \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends apache2; }

# Always rebuilt (go build is incremental), so the binary never lags the source.
plugin:
	@mkdir -p bin/plugins
	$(GO) build -ldflags "-X $(MODULE).Version=$(VERSION)" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)

# Release binaries: the same commit gives the same bytes on any machine and
# in any directory (scripts/release.sh: CGO_ENABLED=0, -trimpath, no build
# id, the toolchain go.mod pins), named with the version, with SHA256SUMS.
release:
	GO=$(GO) VERSION=$(VERSION) scripts/release.sh bin/release/$(VERSION)

# The acceptance tests also need the plugin built with the crashhook tag (it
# kills itself at the point JWT_ROTOR_CRASH_AT names; tests/safety_crash_test.go)
# and the Node verifier's packages from tests/node/package-lock.json.
.PHONY: plugin-crashhook node-deps
test testacc: plugin-crashhook node-deps docs-deps
# The sink tests, in the root package and the acceptance suite, start a
# real S3 gateway, a real WebDAV server, a Cloud Storage emulator, and
# Azurite.
dev test testunit testacc: versitygw fake-gcs-server apache2
test testunit testacc: azurite

# Always rebuilt, like the plugin.
provider:
	@mkdir -p bin
	cd $(PROVIDER_DIR) && $(GO) build -ldflags "-X main.version=$(VERSION)" -o ../$(PROVIDER_BIN) .

# The provider's docs, from its schema, examples/ and templates/, with
# terraform-plugin-docs pinned in tools/docs; make testprovider fails when
# they are not current.
provider-docs:
	GO=$(GO) scripts/provider-docs.sh

plugin-crashhook:
	@mkdir -p bin/plugins-crashhook
	$(GO) build -tags crashhook -ldflags "-X $(MODULE).Version=$(VERSION)" -o bin/plugins-crashhook/$(PLUGIN_NAME) ./cmd/$(PLUGIN_NAME)

node-deps:
	cd tests/node && npm ci --no-audit --no-fund

# What the docs' commands need, from Debian's packages when missing: PyJWT
# (python3-jwt) for the README's Python snippet, on the system interpreter,
# and jq for the commands that pick fields out of -format=json.
docs-deps:
	@missing=; \
	/usr/bin/python3 -c 'import jwt' 2>/dev/null || missing="$$missing python3-jwt"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	[ -z "$$missing" ] || { \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update && $$sudo apt-get install -y $$missing; }

dev:
	VERSION=$(VERSION) scripts/dev.sh

dev-stop:
	scripts/dev-stop.sh

# Both suites run even if the first fails; the target fails if either did.
test: vault plugin
	@status=0; \
	echo '==> unit tests'; \
	$(UNIT_CMD) || status=1; \
	echo '==> model-based test for $(MODEL_BUDGET)'; \
	$(MAKE) --no-print-directory testmodel || status=1; \
	echo '==> acceptance tests'; \
	( $(ACC_CMD) ) || status=1; \
	echo '==> Terraform provider: unit tests, then Terraform against Vault (TF_ACC=1)'; \
	$(MAKE) --no-print-directory testprovider || status=1; \
	echo '==> benchmarks and load script (run once, not timed)'; \
	$(MAKE) --no-print-directory benchcheck || status=1; \
	echo '==> fuzz targets from their seeds, $(TEST_FUZZTIME) each'; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME) || status=1; \
	echo '==> gofmt, go vet and staticcheck'; \
	$(MAKE) --no-print-directory lint || status=1; \
	echo '==> go mod verify'; \
	$(MAKE) --no-print-directory modverify || status=1; \
	echo '==> govulncheck against the database built from golang.org/x/vulndb'; \
	$(MAKE) --no-print-directory vulncheck || status=1; \
	exit $$status

testunit:
	$(UNIT_CMD)

# Random operation sequences checked against the invariants after every step
# (docs/invariants.md); prints the sequences and steps run.
testmodel:
	GO=$(GO) scripts/model.sh $(MODEL_BUDGET)

soak:
	GO=$(GO) scripts/model.sh $(SOAK)

# The model test's proof that it finds bugs by itself: each plausible
# regression in testdata/model-check/ is applied to a scratch copy and must
# make TestModel fail in each of RUNS runs of MODEL_BUDGET, and the unpatched
# code must pass (scripts/model-check.sh prints the runs caught and the
# median time to catch). MODEL_CHECK_PATCHES='testdata/model-check/04-*.patch'
# runs some of them.
RUNS                ?= 20
MODEL_CHECK_PATCHES ?=
model-check:
	GO=$(GO) RUNS=$(RUNS) BUDGET=$(MODEL_BUDGET) scripts/model-check.sh $(MODEL_CHECK_PATCHES)

testacc: vault plugin
	$(ACC_CMD)

# The provider's unit and acceptance tests; fails if terraform is missing
# or any test skipped (scripts/test-provider.sh). PROVIDER_FLAGS='-run Policy'.
testprovider: vault plugin
	GO=$(GO) ACC_TIMEOUT=$(ACC_TIMEOUT) scripts/test-provider.sh

# Go benchmarks, then the side-by-side load test against Vault's built-ins.
bench: vault plugin
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...
	scripts/bench.sh

# make test only checks that the benchmarks and the load script run.
benchcheck: vault plugin
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...
	BENCH_ROUNDS=1 BENCH_DURATION=200ms BENCH_MEMORY=0 scripts/bench.sh >/dev/null

fmt:
	gofmt -w $$(git ls-files --cached --others --exclude-standard '*.go')

vet:
	$(GO) vet ./...
	cd testserver && $(GO) vet ./...
	cd tests && $(GO) vet ./...
	cd $(PROVIDER_DIR) && $(GO) vet ./...

# Fails on unformatted files instead of rewriting them, then vets.
# staticcheck is pinned as a Go tool in tools/lint.
lint: vet
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@mkdir -p bin
	$(GO) -C tools/lint build -o ../../bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	bin/staticcheck ./...
	cd testserver && ../bin/staticcheck ./...
	cd tests && ../bin/staticcheck ./...
	cd $(PROVIDER_DIR) && ../bin/staticcheck ./...

clean: dev-stop
	rm -rf bin/plugins .dev $(PROVIDER_BIN)

# Also removes bin/vault, which takes minutes to rebuild.
distclean: clean
	rm -rf bin

# go test -fuzz takes one target at a time: run each in turn. A crasher is
# written to testdata/fuzz/<target>/ and from then on fails plain go test,
# as a regression test, until the bug is fixed.
fuzz:
	@targets=$$($(GO) test -list '^Fuzz' . | grep '^Fuzz'); \
	test -n "$$targets" || { echo 'no fuzz targets found' >&2; exit 1; }; \
	status=0; \
	for t in $$targets; do \
		echo "--> $$t for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $(FUZZ_FLAGS) . || status=1; \
	done; \
	exit $$status

# Every module's dependencies match their go.sum hashes.
modverify:
	$(GO) mod verify
	cd testserver && $(GO) mod verify
	cd tests && $(GO) mod verify
	cd $(PROVIDER_DIR) && $(GO) mod verify
	cd tools/vault && $(GO) mod verify
	cd tools/versitygw && $(GO) mod verify
	cd tools/fake-gcs-server && $(GO) mod verify
	cd tools/vuln && $(GO) mod verify
	cd tools/lint && $(GO) mod verify
	cd tools/docs && $(GO) mod verify
	cd tools/mutation && $(GO) mod verify

# Offline govulncheck of the plugin, the test-server harness, the acceptance
# tests and the Terraform provider (scripts/govulncheck.sh).
vulncheck:
	GO=$(GO) scripts/govulncheck.sh

# Mutation testing with gremlins, pinned in tools/mutation: the scopes and
# their files are listed once, in scripts/mutation.sh. MUTATION_SCOPES=signing
# runs one scope; MUTATION_WORKERS=2 tests two mutants at a time.
mutation:
	GO=$(GO) scripts/mutation.sh
