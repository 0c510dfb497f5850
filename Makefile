# pgstash — build, run the demo, test, benchmark.
#
#   make                 build ./pgstash
#   make run             throwaway PostgreSQL + Redis + pgstash in the foreground
#   make test            install what is missing, build, run every test
#   make bench           side-by-side benchmark (never part of `make test`)
#   make SANITIZE=address,undefined test    the same tests under ASan/UBSan

CC       ?= cc
PKGS     := hiredis jansson yaml-0.1 libpq libcrypto
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef \
            -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN     += -Werror
endif

PQ_INC   := $(shell pg_config --includedir 2>/dev/null)
CPPFLAGS += -I. -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lpg_query -lpthread -lm

ifdef SANITIZE
VARIANT  := san
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE)
BIN      := build/san/pgstash
else
VARIANT  := release
BIN      := pgstash
endif
OBJDIR   := build/$(VARIANT)

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GITREV   := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPPFLAGS += -DPGSTASH_VERSION='"$(VERSION)"' -DPGSTASH_GITREV='"$(GITREV)"'

# Libraries without sockets or libev: unit-testable and fuzzable alone.
LIB_SRC   := $(sort $(wildcard sqlparse/*.c cachekeys/*.c config/*.c))
PROXY_SRC := $(sort $(filter-out proxy/main.c,$(wildcard proxy/*.c)))
LIB_OBJ   := $(LIB_SRC:%.c=$(OBJDIR)/%.o)
PROXY_OBJ := $(PROXY_SRC:%.c=$(OBJDIR)/%.o)
MAIN_OBJ  := $(OBJDIR)/proxy/main.o

UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(OBJDIR)/tests/%)

.PHONY: all deps run test unit integration pgbench-test bench fuzz format format-check clean
all: $(BIN)

deps:
	@bash scripts/install-deps.sh build

# main.c prints the git revision (--version, the start-up log, the bench report): rebuild it
# whenever HEAD moves, not only when main.c changes.
GITREV_STAMP := $(OBJDIR)/gitrev
$(shell mkdir -p $(OBJDIR); echo '$(GITREV)' | cmp -s - $(GITREV_STAMP) 2>/dev/null || \
        echo '$(GITREV)' > $(GITREV_STAMP))
$(MAIN_OBJ): $(GITREV_STAMP)

$(BIN): $(MAIN_OBJ) $(PROXY_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OBJDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

$(OBJDIR)/tests/%: tests/unit/%.c $(PROXY_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(shell pkg-config --cflags check) $(LDFLAGS) -o $@ $^ \
	    $(LDLIBS) $(shell pkg-config --libs check)

-include $(shell find build -name '*.d' 2>/dev/null)

# --- the README's two commands --------------------------------------------------------

run:
	@bash scripts/install-deps.sh run
	@$(MAKE) --no-print-directory $(BIN)
	@bash scripts/demo.sh

test:
	@bash scripts/install-deps.sh test
	@$(MAKE) --no-print-directory WERROR=1 $(BIN) unit-bins
	@bash tests/run-all.sh

# --- pieces of the test suite -----------------------------------------------------------

.PHONY: unit-bins
unit-bins: $(UNIT_BIN)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; CK_FORK=yes $$t; done

integration: $(BIN)
	@PGSTASH_BIN=$(abspath $(BIN)) /usr/bin/python3 -m pytest -q -x tests/integration $(PYTEST_ARGS)

bench: $(BIN)
	@bash scripts/install-deps.sh bench
	@bash tests/bench/run.sh $(BENCH_ARGS)

# --- fuzzing: clang + libFuzzer targets under tests/fuzz/ (see its README) ----------------

FUZZ_SECONDS ?= 60

fuzz:
	@bash scripts/install-deps.sh fuzz
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build pgstash
