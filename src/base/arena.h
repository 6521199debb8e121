/* Bump allocator for a run's scratch and planned buffers.
 *
 * Memory is taken in large chunks and handed out with alignment; nothing is
 * freed piecemeal.  cs_arena_reset keeps the chunks for reuse, cs_arena_free
 * returns them.  Plans size their buffers up front (a planning pass), so the
 * per-batch loops never allocate. */
#ifndef CS_BASE_ARENA_H
#define CS_BASE_ARENA_H

#include <stddef.h>

#include "base/status.h"

typedef struct cs_arena_chunk cs_arena_chunk;

typedef struct cs_arena {
    cs_arena_chunk *head;  /* chunk being filled */
    size_t chunk_bytes;    /* default size of a new chunk */
    size_t used_bytes;     /* total handed out since last reset */
} cs_arena;

/* chunk_bytes 0 picks a default (1 MiB). */
void cs_arena_init(cs_arena *a, size_t chunk_bytes);

/* Returns zeroed memory aligned to 64 bytes, owned by the arena, or NULL
 * when the allocation fails. */
void *cs_arena_alloc(cs_arena *a, size_t bytes);

/* Duplicates a NUL-terminated string into the arena. */
char *cs_arena_strdup(cs_arena *a, const char *s);

/* Forget all allocations; chunks are kept for reuse. */
void cs_arena_reset(cs_arena *a);

/* Release every chunk. The arena may be initialised again afterwards. */
void cs_arena_free(cs_arena *a);

#endif
