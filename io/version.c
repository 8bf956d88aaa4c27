/* io/version.c -- tf_version(): the version this library was built as (include/tcpframe/version.h).
 * Compiled into the library, so a program can compare it with the header it was built against. */
#include "tcpframe/version.h"

uint32_t tf_version(void)
{
    return TF_VERSION;
}

const char *tf_version_string(void)
{
    return TF_VERSION_STRING;
}
