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
    if (!tf__malloc_hook)
        return tf__realloc(p, n);
    void *q = tf__malloc_hook(n); /* a test's seam sees every size the buffer takes */
    if (!q)
        return NULL;
    if (old)
        memcpy(q, p, old); /* p may be NULL (a first allocation): no copy then */
    free(p);
    return q;
}
