/* io/alloc.c -- the one allocation seam of buffers handed to users (internal.h). */
#include <stdlib.h>

#include "internal.h"

void *(*tf__malloc_hook)(size_t n) = NULL;

void *tf__malloc(size_t n)
{
    return tf__malloc_hook ? tf__malloc_hook(n) : tf__alloc(n);
}
