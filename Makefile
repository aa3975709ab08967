# Makefile — build, test and run sdefed.
#
#   make                 build build/bin/{sdefed-agent,sdefed-coordinator,sdefed,sdefed-synth}
#   make check           unit + integration tests
#   make demo            a 3-site federation on loopback answering real queries
#   make SANITIZE=address,undefined check    the same under ASan/UBSan
#   make fuzz            libFuzzer targets (clang)
#   make install PREFIX=/usr/local DESTDIR=
#
# Dependencies come from pkg-config; `make deps` installs missing Debian
# packages through deploy/deps.sh.

PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
BUILD    ?= build
SANITIZE ?=

PKGS := libuv libssl libcrypto libprotobuf-c sqlite3 jansson inih libpq

WARN    := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -fno-strict-aliasing
CPPFLAGS += -Iinclude -I$(BUILD)/gen -Iagent -Icoordinator $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

# `make fuzz` builds everything with clang and -fsanitize=fuzzer-no-link.
CFLAGS  += $(FUZZ_CFLAGS)

ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

PROTO_C := $(BUILD)/gen/sdefed.pb-c.c
PROTO_H := $(BUILD)/gen/sdefed.pb-c.h

LIB_SRC   := $(wildcard lib/*.c) $(PROTO_C)
AGENT_SRC := $(filter-out agent/main.c,$(wildcard agent/*.c agent/*/*.c))
COORD_SRC := $(filter-out coordinator/main.c,$(wildcard coordinator/*.c))
CLI_SRC   := $(filter-out coordinator/cli/main.c,$(wildcard coordinator/cli/*.c))
SYNTH_SRC := $(wildcard deploy/synth/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(patsubst $(BUILD)/%,%,$(1)))

LIB_OBJ   := $(call obj,$(LIB_SRC))
AGENT_OBJ := $(call obj,$(AGENT_SRC))
COORD_OBJ := $(call obj,$(COORD_SRC))
CLI_OBJ   := $(call obj,$(CLI_SRC))

LIBSDEFED := $(BUILD)/lib/libsdefed.a
LIBAGENT  := $(BUILD)/lib/libagent.a
LIBCOORD  := $(BUILD)/lib/libcoord.a
LIBCLI    := $(BUILD)/lib/libcli.a

BINS := $(BUILD)/bin/sdefed-agent $(BUILD)/bin/sdefed-coordinator $(BUILD)/bin/sdefed $(BUILD)/bin/sdefed-synth

UNIT_SRC  := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps check unit integration demo fuzz fuzz-bins soak soak-smoke install uninstall deb bench clean
.SUFFIXES:
.DELETE_ON_ERROR:

all: $(BINS)

deps:
	@sh deploy/deps.sh

# ---- generated protobuf code (never committed) ----
$(PROTO_C) $(PROTO_H): proto/sdefed.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

# every object may include the generated header
$(BUILD)/obj/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out -Wshadow,$(CFLAGS)) -c -o $@ $<

$(LIBSDEFED): $(LIB_OBJ)
$(LIBAGENT): $(AGENT_OBJ)
$(LIBCOORD): $(COORD_OBJ)
$(LIBCLI): $(CLI_OBJ)
$(BUILD)/lib/%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/sdefed-agent: $(BUILD)/obj/agent/main.o $(LIBAGENT) $(LIBSDEFED)
$(BUILD)/bin/sdefed-coordinator: $(BUILD)/obj/coordinator/main.o $(LIBCOORD) $(LIBSDEFED)
$(BUILD)/bin/sdefed: $(BUILD)/obj/coordinator/cli/main.o $(LIBCLI) $(LIBSDEFED)
$(BUILD)/bin/sdefed-synth: $(call obj,$(SYNTH_SRC)) $(BUILD)/obj/gen/omop_ddl.o $(LIBSDEFED)

# The OMOP CDM v5.4 DDL shipped in deploy/omop/ is compiled into the generator.
$(BUILD)/gen/omop_ddl.c: deploy/omop/OMOPCDM_sqlite_5.4_ddl.sql deploy/synth/embed.sh
	@mkdir -p $(dir $@)
	sh deploy/synth/embed.sh $< omop_ddl_sql > $@
$(BUILD)/bin/%:
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests ----
# tests/unit mirrors the tree; each directory links only what it tests.
TEST_LIBS_lib         := $(LIBSDEFED)
TEST_LIBS_agent       := $(LIBAGENT) $(LIBSDEFED)
TEST_LIBS_coordinator := $(LIBCOORD) $(LIBSDEFED)
TEST_LIBS_cli         := $(LIBCLI) $(LIBSDEFED)

define unit_rule
$(BUILD)/tests/$(1)/%: tests/unit/$(1)/%.c $$(TEST_LIBS_$(1)) $$(PROTO_H)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$< $$(TEST_LIBS_$(1)) $$(LDLIBS) -lcmocka
endef
$(foreach d,lib agent coordinator cli,$(eval $(call unit_rule,$(d))))

# ---- fuzzing (libFuzzer, clang) ----
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 60
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIBCOORD) $(LIBAGENT) $(LIBSDEFED) $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(LIBCOORD) $(LIBAGENT) $(LIBSDEFED) $(LDLIBS)

# fuzz_coord stands in for the connection layer (tests/fuzz/fuzz_coord.c).
$(BUILD)/fuzz/fuzz_coord: LDFLAGS += -Wl,--wrap=peer_send

fuzz-bins: $(FUZZ_BINS)

# Each target runs FUZZ_SECONDS (default 60; CI uses a short smoke run).
fuzz:
	@sh deploy/deps.sh fuzz
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SANITIZE=address,undefined \
		FUZZ_CFLAGS=-fsanitize=fuzzer-no-link fuzz-bins
	@sh tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS) $(notdir $(FUZZ_BINS))

# Load and soak: many agents and analysts on loopback, resources watched.
SOAK_SECONDS ?= 600
soak: all
	@BUILD=$(BUILD) python3 tests/bench/soak.py --sites 50 --analysts 8 --seconds $(SOAK_SECONDS) --check

soak-smoke: all
	@BUILD=$(BUILD) python3 tests/bench/soak.py --sites 10 --analysts 4 --seconds 20 --check

unit: $(UNIT_BINS) $(BINS)
	@BUILD=$(BUILD) sh tests/run-unit.sh $(UNIT_BINS)

integration: $(BINS)
	@BUILD=$(BUILD) python3 tests/integration/run.py

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh deploy/demo.sh

# ---- install / packages (deploy/README.md) ----
# Programs, man pages, systemd units (ExecStart pointed at SBINDIR), the
# annotated example configs and deploy/pki. /etc and /var/lib are left to
# the operator or the Debian packages (`make deb`, deploy/debian/).
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/sdefed
DATADIR ?= $(PREFIX)/share/sdefed
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install

install: $(BINS)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DATADIR) \
		$(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(BUILD)/bin/sdefed $(DESTDIR)$(BINDIR)/sdefed
	$(INSTALL) -m 0755 $(BUILD)/bin/sdefed-agent $(DESTDIR)$(SBINDIR)/sdefed-agent
	$(INSTALL) -m 0755 $(BUILD)/bin/sdefed-coordinator $(DESTDIR)$(SBINDIR)/sdefed-coordinator
	$(INSTALL) -m 0644 deploy/man/sdefed.1 $(DESTDIR)$(MANDIR)/man1/sdefed.1
	$(INSTALL) -m 0644 deploy/man/sdefed-agent.8 deploy/man/sdefed-coordinator.8 \
		$(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 deploy/examples/agent.conf deploy/examples/coordinator.conf \
		deploy/examples/client.conf deploy/examples/*.json $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 deploy/README.md $(DESTDIR)$(DOCDIR)/README.md
	$(INSTALL) -m 0755 deploy/pki $(DESTDIR)$(DATADIR)/pki
	for u in sdefed-agent sdefed-coordinator; do \
		sed 's|/usr/sbin/|$(SBINDIR)/|g' deploy/systemd/$$u.service \
			> $(DESTDIR)$(UNITDIR)/$$u.service && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service \
			|| exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sdefed $(DESTDIR)$(SBINDIR)/sdefed-agent \
		$(DESTDIR)$(SBINDIR)/sdefed-coordinator $(DESTDIR)$(MANDIR)/man1/sdefed.1 \
		$(DESTDIR)$(MANDIR)/man8/sdefed-agent.8 $(DESTDIR)$(MANDIR)/man8/sdefed-coordinator.8 \
		$(DESTDIR)$(UNITDIR)/sdefed-agent.service $(DESTDIR)$(UNITDIR)/sdefed-coordinator.service \
		$(DESTDIR)$(DATADIR)/pki
	rm -rf $(DESTDIR)$(DOCDIR)
	-rmdir $(DESTDIR)$(DATADIR) 2>/dev/null

# Three .debs in $(BUILD)/deb/: sdefed-agent, sdefed-coordinator, sdefed-cli.
deb: $(BINS)
	@BUILD=$(BUILD) sh deploy/debian/build-deb.sh

# Benchmarks (not part of check): 4 x 1M-person sites cached in build/bench/,
# SQLite and PostgreSQL federation vs direct SQL and postgres_fdw, latency
# across 8 agents. Needs ~50 GB of disk; see tests/bench/README.md.
bench: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory bench-differencing
	@BUILD=$(BUILD) python3 tests/bench/run.py

# Disk, memory and time of the differencing store vs the count query
# (issue 4; about a minute; BENCH_DIFF_MAX caps kept x persons).
.PHONY: bench-differencing
$(BUILD)/tests/bench/differencing: tests/bench/differencing.c $(LIBAGENT) $(LIBSDEFED) $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBAGENT) $(LIBSDEFED) $(LDLIBS)
bench-differencing: $(BUILD)/tests/bench/differencing
	@mkdir -p $(BUILD)/bench
	@$(BUILD)/tests/bench/differencing $(BUILD)/bench/differencing.json

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
