/*
 * arena.c — bump allocator for the short-lived data of one analysis (unpacked parse trees,
 * scratch vectors). protobuf-c's unpack allocates every message and string separately;
 * through an arena that costs a pointer bump and the whole tree is dropped at once.
 */
#include "sqlparse/internal.h"

#include <stdint.h>
#include <stdlib.h>

#define ARENA_FIRST_CHUNK 8192
#define ARENA_MAX_CHUNK   (1u << 20)

typedef struct ArenaChunk {
    struct ArenaChunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) unsigned char data[];
} ArenaChunk;

struct SqlArena {
    ArenaChunk *chunks; /* newest first; allocations come from the newest */
    size_t next_size;   /* size of the next regular chunk */
    ProtobufCAllocator allocator;
};

static void *arena_pb_alloc(void *data, size_t size)
{
    return sqlparse_arena_alloc(data, size);
}

static void arena_pb_free(void *data, void *ptr)
{
    /* Freed with the arena. */
    (void)data;
    (void)ptr;
}

SqlArena *sqlparse_arena_new(void)
{
    SqlArena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->next_size = ARENA_FIRST_CHUNK;
    a->allocator.alloc = arena_pb_alloc;
    a->allocator.free = arena_pb_free;
    a->allocator.allocator_data = a;
    return a;
}

void sqlparse_arena_free(SqlArena *a)
{
    if (!a)
        return;
    ArenaChunk *c = a->chunks;
    while (c) {
        ArenaChunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *sqlparse_arena_alloc(SqlArena *a, size_t size)
{
    if (size > SIZE_MAX - 15 - sizeof(ArenaChunk))
        return NULL;
    size = (size + 15) & ~(size_t)15;
    ArenaChunk *c = a->chunks;
    if (c && c->size - c->used >= size) {
        void *p = c->data + c->used;
        c->used += size;
        return p;
    }
    /* A big request gets a chunk of its own, kept behind the current one so the space
     * left in the current chunk is not wasted. */
    size_t csize = size > a->next_size ? size : a->next_size;
    ArenaChunk *n = malloc(sizeof *n + csize);
    if (!n)
        return NULL;
    n->size = csize;
    n->used = size;
    if (csize == size && c) {
        n->next = c->next;
        c->next = n;
    } else {
        n->next = c;
        a->chunks = n;
        if (a->next_size < ARENA_MAX_CHUNK)
            a->next_size *= 2;
    }
    return n->data;
}

ProtobufCAllocator *sqlparse_arena_allocator(SqlArena *a)
{
    return &a->allocator;
}
