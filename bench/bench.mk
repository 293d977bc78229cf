# make bench / bench-check / bench-baseline / bench-history — included at the end of the main
# Makefile. bench-check is the regression gate (instructions per op under callgrind, against
# bench/gate-baseline.json); bench is the side-by-side report against etcd. Neither is part of
# make test.
# The load generator links the protobuf-c code the main Makefile generates from core/proto.
BENCH_LOADGEN := $(BUILD)/bench/loadgen
BENCH_ARGS    ?=

.PHONY: bench bench-check bench-baseline bench-deps bench-loadgen bench-uetcd bench-history \
	bench-ratios bench-ratios-baseline

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

# LD_PRELOAD shim that lets the io_uring reactor run under Valgrind 3.19 (gate only).
BENCH_VG_URING := $(BUILD)/bench/vg_uring.so
$(BENCH_VG_URING): bench/vg_uring.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -fPIC -o $@ bench/vg_uring.c -luring -ldl

# uetcd may not build or serve yet: bench.py then measures etcd alone and says so.
bench-uetcd:
	-@$(MAKE) --no-print-directory $(BUILD)/uetcd

bench: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	@$(BENCH_LOADGEN) --self-test
	$(PYTHON) bench/bench.py run --build $(BUILD) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-rangestream

# Range against RangeStream on one 100K-key list (~110 MB): time to first byte, to the end,
# and the server's RSS while each is read (bench/results/rangestream.txt). About a minute.
.PHONY: bench-rangestream
bench-rangestream: bench-deps bench-uetcd
	UETCD_BIN=$(abspath $(BUILD)/uetcd) $(PYTHON) bench/rangestream.py | tee bench/results/rangestream.txt

# The gate: fails (exit 1) when a workload's server instructions per op grew by more than the
# tolerance against bench/gate-baseline.json, and names the functions that grew. ~2-4 minutes.
bench-check: bench-deps $(BENCH_LOADGEN) $(BENCH_VG_URING) $(BUILD)/uetcd
	$(PYTHON) bench/gate.py check --build $(BUILD) $(BENCH_ARGS)

# Rewrites bench/gate-baseline.json from this tree (NOTE='why' required); commit it.
bench-baseline: bench-deps $(BENCH_LOADGEN) $(BENCH_VG_URING) $(BUILD)/uetcd
	$(PYTHON) bench/gate.py baseline --build $(BUILD) $(BENCH_ARGS)

# Figures of every bench / bench-check / bench-startup over the runs: bench/results/history.png
bench-history: bench-deps
	$(PYTHON) bench/history.py bench/results/history.png

# The old ratio check against etcd (bench/baseline.json): a report, never a gate.
bench-ratios: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	@$(BENCH_LOADGEN) --self-test
	$(PYTHON) bench/bench.py check --build $(BUILD) $(BENCH_ARGS)

bench-ratios-baseline: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	$(PYTHON) bench/bench.py baseline --build $(BUILD) $(BENCH_ARGS)

# Start-up time with 1M keys of 256-byte values: uetcd from its checkpoint, uetcd replaying
# its whole log, and etcd, side by side (bench/results/startup.txt). About 3 minutes.
.PHONY: bench-startup
bench-startup: bench-deps $(BENCH_LOADGEN) etcd-ref bench-uetcd
	$(PYTHON) bench/startup.py --build $(BUILD) $(BENCH_ARGS)
