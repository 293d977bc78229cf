# make bench / bench-check / bench-baseline — included at the end of the main Makefile.
# The load generator links the protobuf-c code the main Makefile generates from core/proto.
BENCH_LOADGEN := $(BUILD)/bench/loadgen
BENCH_ARGS    ?=

.PHONY: bench bench-check bench-baseline bench-deps bench-loadgen bench-uetcd

bench-deps:
	@tools/deps.sh bench

bench-loadgen: $(BENCH_LOADGEN)

# TLS in the load generator is OpenSSL's (independent of the server's wolfSSL), compiled in when
# libssl-dev is present.
BENCH_TLS := $(shell pkg-config --exists openssl 2>/dev/null && echo yes)
BENCH_TLS_CFLAGS := $(if $(BENCH_TLS),-DLOADGEN_TLS $(shell pkg-config --cflags openssl))
BENCH_TLS_LIBS := $(if $(BENCH_TLS),$(shell pkg-config --libs openssl))

$(BENCH_LOADGEN): bench/loadgen.c $(GEN_H) $(GEN_C:.c=.o)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BENCH_TLS_CFLAGS) -o $@ bench/loadgen.c $(GEN_C:.c=.o) \
		-lnghttp2 -lprotobuf-c $(BENCH_TLS_LIBS) -lpthread -lm

# uetcd may not build or serve yet: bench.py then measures etcd alone and says so.
bench-uetcd:
	-@$(MAKE) --no-print-directory $(BUILD)/uetcd

bench: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	@$(BENCH_LOADGEN) --self-test
	$(PYTHON) bench/bench.py run --build $(BUILD) $(BENCH_ARGS)

bench-check: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	@$(BENCH_LOADGEN) --self-test
	$(PYTHON) bench/bench.py check --build $(BUILD) $(BENCH_ARGS)

bench-baseline: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	$(PYTHON) bench/bench.py baseline --build $(BUILD) $(BENCH_ARGS)

# Start-up time with 1M keys of 256-byte values: uetcd from its checkpoint, uetcd replaying
# its whole log, and etcd, side by side (bench/results/startup.txt). About 3 minutes.
.PHONY: bench-startup
bench-startup: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	$(PYTHON) bench/startup.py --build $(BUILD) $(BENCH_ARGS)
