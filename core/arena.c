/* See arena.h. Chunks form a singly linked list; the head chunk survives a reset, larger
 * chunks made for oversized allocations are released by it. */
#include "core/arena.h"
#include "core/log.h"

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define UETCD_ARENA_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UETCD_ARENA_MALLOC 1
#endif
#endif

struct arena_chunk {
	struct arena_chunk *next;
	size_t size, used;
	_Alignas(16) unsigned char data[];
};

struct arena {
	struct arena_chunk *head, *cur;
	size_t chunk_size;
	size_t total;
#ifdef UETCD_ARENA_MALLOC
	void **ptrs;
	size_t nptrs, capptrs;
#endif
};

static struct arena_chunk *arena_chunk_new(size_t size)
{
	struct arena_chunk *c = malloc(sizeof *c + size);

	if (!c)
		log_fatal("arena: out of memory allocating %zu bytes", size);
	c->next = NULL;
	c->size = size;
	c->used = 0;
	return c;
}

struct arena *arena_new(size_t chunk_size)
{
	struct arena *a = calloc(1, sizeof *a);

	if (!a)
		log_fatal("arena: out of memory");
	a->chunk_size = chunk_size < 256 ? 256 : chunk_size;
	a->head = a->cur = arena_chunk_new(a->chunk_size);
	return a;
}

void arena_reset(struct arena *a)
{
	struct arena_chunk *c = a->head;

	while (c->next) {
		struct arena_chunk *n = c->next;
		c->next = n->next;
		free(n);
	}
	c->used = 0;
	a->cur = c;
	a->total = 0;
#ifdef UETCD_ARENA_MALLOC
	for (size_t i = 0; i < a->nptrs; i++)
		free(a->ptrs[i]);
	a->nptrs = 0;
#endif
}

void arena_free(struct arena *a)
{
	if (!a)
		return;
	arena_reset(a);
#ifdef UETCD_ARENA_MALLOC
	free(a->ptrs);
#endif
	free(a->head);
	free(a);
}

void *arena_alloc(struct arena *a, size_t size)
{
	size_t need = (size + 15) & ~(size_t)15;
	struct arena_chunk *c = a->cur;

	a->total += need;
#ifdef UETCD_ARENA_MALLOC
	if (a->nptrs == a->capptrs) {
		a->capptrs = a->capptrs ? a->capptrs * 2 : 64;
		a->ptrs = realloc(a->ptrs, a->capptrs * sizeof *a->ptrs);
		if (!a->ptrs)
			log_fatal("arena: out of memory");
	}
	void *p = malloc(size ? size : 1);
	if (!p)
		log_fatal("arena: out of memory");
	a->ptrs[a->nptrs++] = p;
	(void)c;
	(void)need;
	return p;
#else
	if (c->size - c->used < need) {
		/* The head chunk stays first so that reset keeps it; an oversized allocation gets
		 * a chunk of its own and leaves the current chunk current. */
		struct arena_chunk *n = arena_chunk_new(need > a->chunk_size ? need : a->chunk_size);
		n->next = c->next;
		c->next = n;
		n->used = need;
		if (need <= a->chunk_size)
			a->cur = n;
		return n->data;
	}
	void *p = c->data + c->used;
	c->used += need;
	return p;
#endif
}

void *arena_memdup(struct arena *a, const void *src, size_t size)
{
	void *p = arena_alloc(a, size);

	if (size)
		memcpy(p, src, size);
	return p;
}

size_t arena_used(const struct arena *a) { return a->total; }

static void *arena_pb_alloc(void *ctx, size_t size) { return arena_alloc(ctx, size); }
static void arena_pb_free(void *ctx, void *ptr) {}

void arena_pb_allocator(struct arena *a, struct ProtobufCAllocator *out)
{
	out->alloc = arena_pb_alloc;
	out->free = arena_pb_free;
	out->allocator_data = a;
}
