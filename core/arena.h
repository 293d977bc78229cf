/* Arena: a bump allocator for memory whose lifetime is one request or one batch.
 * Everything allocated is released at once by arena_reset(); the first chunk is kept,
 * so a steady request load allocates nothing after warm-up. Built with -DUETCD_ARENA_MALLOC
 * (set automatically under AddressSanitizer) every allocation is its own malloc, so ASan
 * still sees overflows and use-after-reset. Not thread-safe: one owner at a time. */
#ifndef UETCD_CORE_ARENA_H
#define UETCD_CORE_ARENA_H

#include <stddef.h>

struct arena;
struct ProtobufCAllocator;

struct arena *arena_new(size_t chunk_size);
void arena_free(struct arena *a);
/* Never fails: running out of memory is fatal. Alignment is 16 bytes. */
void *arena_alloc(struct arena *a, size_t size);
void *arena_memdup(struct arena *a, const void *src, size_t size);
void arena_reset(struct arena *a);
/* Bytes handed out since the last reset (for limits and metrics). */
size_t arena_used(const struct arena *a);
/* A protobuf-c allocator that draws from the arena; free is a no-op. */
void arena_pb_allocator(struct arena *a, struct ProtobufCAllocator *out);

#endif
