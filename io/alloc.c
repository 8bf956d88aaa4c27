/* io/alloc.c -- the one allocation seam of buffers handed to users (internal.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *(*tf__malloc_hook)(size_t n) = NULL;

void *tf__malloc(size_t n)
{
    return tf__malloc_hook ? tf__malloc_hook(n) : tf__alloc(n);
}

void *tf__grow(void *p, size_t old, size_t n)
{
    if (tf__malloc_hook) { /* a test counts or fails it like any user buffer */
        uint8_t *q = tf__malloc_hook(n);
        if (q && old)
            memcpy(q, p, old < n ? old : n);
        if (q)
            free(p);
        return q;
    }
    size_t ask = n;
    if (tf__sys_hook_malloc(&ask))
        return NULL;
    return realloc(p, n);
}
