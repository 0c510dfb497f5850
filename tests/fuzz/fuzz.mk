# tests/fuzz/fuzz.mk — builds the libFuzzer targets with clang, ASan and UBSan into build/fuzz/.
# Run from the repository root: make -f tests/fuzz/fuzz.mk [-j2]
# (`make fuzz` and tests/fuzz/run-corpus.sh call it; objects are rebuilt only when changed.)

CLANG    ?= clang
FUZZ_DIR := build/fuzz
OBJ_DIR  := $(FUZZ_DIR)/obj
PKGS     := hiredis jansson yaml-0.1 libpq libcrypto
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS   := -O1 -g -fno-omit-frame-pointer $(SAN) -fsanitize=fuzzer-no-link
WARN     := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef \
            -Wno-unused-parameter -Wno-gnu-variable-sized-type-not-at-end
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CPPFLAGS := -I. -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
            -DPGSTASH_VERSION='"$(VERSION)"' -DPGSTASH_GITREV='"fuzz"'
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lpg_query -lpthread -lm

# Everything the unit tests link: every module but proxy/main.c.
SRC      := $(sort $(wildcard sqlparse/*.c cachekeys/*.c config/*.c)) \
            $(sort $(filter-out proxy/main.c,$(wildcard proxy/*.c)))
OBJ      := $(SRC:%.c=$(OBJ_DIR)/%.o)
HARNESS  := $(OBJ_DIR)/tests/fuzz/harness.o

TARGETS  := frontend backend entry sqlparse config scram
BINS     := $(TARGETS:%=$(FUZZ_DIR)/fuzz_%)

.PHONY: all
all: $(BINS)

# Keep the targets' objects (make would delete them as intermediates of fuzz_%).
.SECONDARY:

$(OBJ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

# The two protocol targets run whole sessions through tests/fuzz/harness.c.
$(FUZZ_DIR)/fuzz_frontend $(FUZZ_DIR)/fuzz_backend: $(HARNESS)

$(FUZZ_DIR)/fuzz_%: $(OBJ_DIR)/tests/fuzz/fuzz_%.o $(OBJ)
	$(CLANG) $(SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

-include $(shell find $(OBJ_DIR) -name '*.d' 2>/dev/null)
