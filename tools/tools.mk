# Operator tools (included from the Makefile with `-include tools/tools.mk`).
#   $(BUILD)/uetcd-logdump [-v] DATA_DIR   print every log record (and with -v its changes)
#   $(BUILD)/uetcd-check DATA_DIR          verify a data dir offline; exit 0 clean, 1 damaged,
#                                          2 torn tail (truncated at start-up), 3 unreadable
#   $(BUILD)/uetcd-restore SNAPSHOT --data-dir NEW           restore `etcdctl snapshot save`'s file
#   $(BUILD)/uetcd-restore --from-data-dir DIR --revision R --data-dir NEW   point-in-time
TOOLS_BIN := $(BUILD)/uetcd-logdump $(BUILD)/uetcd-check $(BUILD)/uetcd-restore

.PHONY: tools
tools: $(TOOLS_BIN)
all: $(TOOLS_BIN)

$(BUILD)/uetcd-logdump: tools/uetcd-logdump.c $(BUILD)/libuetcd.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libuetcd.a $(LDLIBS)

$(BUILD)/uetcd-check: tools/uetcd-check.c $(BUILD)/libuetcd.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libuetcd.a $(LDLIBS)

$(BUILD)/uetcd-restore: tools/uetcd-restore.c $(BUILD)/libuetcd.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libuetcd.a $(LDLIBS)
