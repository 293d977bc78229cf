/* etcd's automatic compaction (--auto-compaction-mode/-retention), as a clock-driven
 * decision the sequencer consults; it never touches the store itself. */
#ifndef UETCD_CORE_AUTOCOMPACT_H
#define UETCD_CORE_AUTOCOMPACT_H

#include <stdbool.h>
#include <stdint.h>

struct autocompact;

/* periodic: keep `retention` ms of history, compacting every min(retention, 1 h);
 * revision: keep `retention` revisions, checking every 5 minutes. NULL when retention <= 0. */
struct autocompact *autocompact_new(bool periodic, int64_t retention, uint64_t now_ms);
void autocompact_free(struct autocompact *a);

/* Records the revision at now_ms; returns the revision to compact to now, or 0. */
int64_t autocompact_tick(struct autocompact *a, uint64_t now_ms, int64_t rev, int64_t compact_rev);
/* Milliseconds until the next tick has work (sample or compaction). */
int64_t autocompact_wait_ms(const struct autocompact *a, uint64_t now_ms);

#endif
