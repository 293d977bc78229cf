# uetcd — one Makefile. Targets: all run test unit asan fuzz bench clean.
# Variant builds go to their own directory: `make asan` is the same tree with
# -fsanitize=address,undefined under build/asan.

BUILD    ?= build
CC       ?= gcc
OPT      ?= -O2
SAN      ?=
CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter \
            -D_GNU_SOURCE -I. -I$(BUILD)/gen $(SAN) $(EXTRA_CFLAGS)
LDLIBS   := -luring -lprotobuf-c -lxxhash -lwolfssl -lcrypt -lpthread -lm
PYTHON   := /usr/bin/python3

PROTOS   := $(wildcard core/proto/*.proto)
GEN_C    := $(patsubst core/proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H    := $(GEN_C:.c=.h)
LIB_SRC  := $(filter-out core/main.c,$(wildcard core/*.c net/*.c storage/*.c tls/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(GEN_C:.c=.o)
UNIT_SRC := $(wildcard tests/unit/*_test.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
FUZZ_SRC := $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_SECONDS ?= 60

.PHONY: all run test unit unit-run asan integration fuzz bench deps deps-test etcd-ref install clean
.DELETE_ON_ERROR:
.SECONDARY:

all: deps $(BUILD)/uetcd

deps:
	@tools/deps.sh build
deps-test:
	@tools/deps.sh test

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: core/proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=core/proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c $(GEN_H)
	$(CC) $(filter-out -Werror,$(CFLAGS)) -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libuetcd.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/uetcd: $(BUILD)/obj/core/main.o $(BUILD)/libuetcd.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%_test: tests/unit/%_test.c $(BUILD)/libuetcd.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -o $@ $< $(BUILD)/libuetcd.a -lcriterion $(LDLIBS)

run: all
	$(BUILD)/uetcd --data-dir ./default.uetcd --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379

# Unit tests, then the same under ASan+UBSan, then integration tests against the real binary.
test: deps-test all etcd-ref
	$(MAKE) --no-print-directory unit-run
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory integration

unit: $(UNIT_BIN)
unit-run: unit
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2 --short-filename; done

asan:
	$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		unit-run $(if $(ASAN_BINARY),build/asan/uetcd)

etcd-ref: $(BUILD)/etcd-ref/usr/bin/etcd
$(BUILD)/etcd-ref/usr/bin/etcd:
	tools/fetch-etcd-ref.sh $(BUILD)/etcd-ref

integration: all etcd-ref
	UETCD_BIN=$(abspath $(BUILD)/uetcd) ETCD_REF=$(abspath $(BUILD)/etcd-ref/usr/bin/etcd) \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# Coverage-guided fuzzing with libFuzzer: each target runs FUZZ_SECONDS.
FUZZ_BUILD := build/fuzz
fuzz:
	@mkdir -p $(FUZZ_BUILD)
	$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 \
		SAN="-fsanitize=fuzzer-no-link,address,undefined -DUETCD_FUZZ" $(FUZZ_BUILD)/libuetcd.a
	@set -e; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
		clang -std=gnu11 -O1 -g -D_GNU_SOURCE -I. -I$(FUZZ_BUILD)/gen -fsanitize=fuzzer,address,undefined \
			-o $(FUZZ_BUILD)/$$n $$f $(FUZZ_BUILD)/libuetcd.a $(LDLIBS); \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
		echo "== $$n ($(FUZZ_SECONDS)s)"; \
		$(FUZZ_BUILD)/$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
			$(FUZZ_BUILD)/corpus/$$n $$( [ -d tests/fuzz/corpus/$$n ] && echo tests/fuzz/corpus/$$n ) 2>&1 | tail -3; \
	done

# Installs build/uetcd as $(PREFIX)/bin/uetcd. With ETCD_LINK=1 also an `etcd` symlink to
# it, so a kubeadm static pod or a script that runs `etcd` runs uetcd with the same flags;
# opt-in, and refused when that path already holds something other than our symlink, or
# when another `etcd` on PATH would be shadowed by it (a distribution's etcd-server).
PREFIX ?= /usr/local
ETCD_LINK ?=
install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/uetcd $(DESTDIR)$(PREFIX)/bin/uetcd
ifeq ($(ETCD_LINK),1)
	@set -e; dst=$(DESTDIR)$(PREFIX)/bin/etcd; \
	if [ -e "$$dst" -o -L "$$dst" ] && [ "$$(readlink "$$dst")" != uetcd ]; then \
		echo "make install: $$dst exists and is not uetcd; not replacing it" >&2; exit 1; fi; \
	other=$$(command -v etcd || true); \
	if [ -n "$$other" ] && [ "$$other" != "$(PREFIX)/bin/etcd" ]; then \
		echo "make install: another etcd is on PATH ($$other); an etcd symlink would shadow it or be shadowed: not made" >&2; exit 1; fi; \
	ln -sf uetcd "$$dst"; echo "installed $$dst -> uetcd"
else
	@echo "installed $(DESTDIR)$(PREFIX)/bin/uetcd (no etcd symlink: make install ETCD_LINK=1 adds one)"
endif

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
-include bench/bench.mk
-include tools/tools.mk
