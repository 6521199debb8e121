#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

struct cs_arena_chunk {
    cs_arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t off;
    unsigned char *data;
};

void cs_arena_init(cs_arena *a, size_t chunk_bytes)
{
    a->head = NULL;
    a->chunk_bytes = chunk_bytes ? chunk_bytes : (size_t)1 << 20;
    a->used_bytes = 0;
}

static cs_arena_chunk *chunk_new(size_t size)
{
    cs_arena_chunk *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    c->data = aligned_alloc(ARENA_ALIGN, size);
    if (!c->data) {
        free(c);
        return NULL;
    }
    c->size = size;
    c->off = 0;
    c->next = NULL;
    return c;
}

void *cs_arena_alloc(cs_arena *a, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (bytes > SIZE_MAX - 2 * ARENA_ALIGN)
        return NULL;
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    /* First chunk with room (after a reset every kept chunk is empty). */
    for (cs_arena_chunk *c = a->head; c; c = c->next) {
        if (c->size - c->off >= need) {
            void *p = c->data + c->off;
            c->off += need;
            a->used_bytes += need;
            memset(p, 0, need);
            return p;
        }
    }
    size_t size = need > a->chunk_bytes ? need : a->chunk_bytes;
    cs_arena_chunk *c = chunk_new(size);
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    c->off = need;
    a->used_bytes += need;
    memset(c->data, 0, need);
    return c->data;
}

char *cs_arena_strdup(cs_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cs_arena_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void cs_arena_reset(cs_arena *a)
{
    for (cs_arena_chunk *c = a->head; c; c = c->next)
        c->off = 0;
    a->used_bytes = 0;
}

void cs_arena_free(cs_arena *a)
{
    cs_arena_chunk *c = a->head;
    while (c) {
        cs_arena_chunk *next = c->next;
        free(c->data);
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_bytes = 0;
}
