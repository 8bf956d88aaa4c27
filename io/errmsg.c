/* io/errmsg.c -- sentences for humans in a tf_errmsg (tcp.h, internal.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void tf__errmsg(tf_errmsg *m, const char *fmt, ...)
{
    if (!m)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->text, sizeof m->text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        m->text[0] = '\0';
        return;
    }
    /* A cut sentence says so: the reader must not take the tail for the whole input. */
    if ((size_t)n >= sizeof m->text)
        memcpy(m->text + sizeof m->text - 4, "...", 4);
}

void tf__errmsg_clear(tf_errmsg *m)
{
    if (m)
        m->text[0] = '\0';
}
