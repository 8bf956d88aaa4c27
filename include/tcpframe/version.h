/* tcpframe/version.h -- the library's version, at compile time and at run time (SPEC.md 10).
 *
 * The header says which version a program was compiled against; tf_version() says which
 * library it runs with. Versions follow semver for the ABI: the soname is libtcpframe.so.MAJOR,
 * and a library of the same major and a minor at least the header's runs every program built
 * against the header (see TF_VERSION_COMPATIBLE). Check it at start-up:
 *
 *   if (!TF_VERSION_COMPATIBLE(tf_version()))
 *       fprintf(stderr, "built against tcpframe %s, running with %s\n", TF_VERSION_STRING,
 *               tf_version_string());
 *
 * Thread-safe, no state.
 */
#ifndef TCPFRAME_VERSION_H
#define TCPFRAME_VERSION_H

#include <stdint.h>

#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. The Makefile reads these three lines (soname, tcpframe.pc). */
#define TF_VERSION_MAJOR 0
#define TF_VERSION_MINOR 1
#define TF_VERSION_PATCH 0

/* The three numbers as one hex number, 0xMMmmpp: 0.1.0 is 0x000100. Orders like the versions. */
#define TF_VERSION_HEX(major, minor, patch)                                                        \
    ((uint32_t)(major)*65536u + (uint32_t)(minor)*256u + (uint32_t)(patch))
#define TF_VERSION TF_VERSION_HEX(TF_VERSION_MAJOR, TF_VERSION_MINOR, TF_VERSION_PATCH)

#define TF_VERSION_STR_(x) #x
#define TF_VERSION_STR(x) TF_VERSION_STR_(x)
/* "0.1.0" */
#define TF_VERSION_STRING                                                                          \
    TF_VERSION_STR(TF_VERSION_MAJOR)                                                               \
    "." TF_VERSION_STR(TF_VERSION_MINOR) "." TF_VERSION_STR(TF_VERSION_PATCH)

/* Nonzero if a library of version |lib| (tf_version()) runs a program compiled against this
 * header: the same major, and a minor at least this header's (new functions come with a new
 * minor; a patch changes no interface). */
#define TF_VERSION_COMPATIBLE(lib)                                                                 \
    ((lib) / 65536u == (uint32_t)TF_VERSION_MAJOR &&                                               \
     (lib) / 256u % 256u >= (uint32_t)TF_VERSION_MINOR)

/* The version of the library the program runs with, in the TF_VERSION form (0xMMmmpp). Equal
 * to TF_VERSION when the header and the library come from the same build. Never fails. */
TF_API uint32_t tf_version(void);

/* The same as text, "MAJOR.MINOR.PATCH"; a static string, never NULL. */
TF_API const char *tf_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_VERSION_H */
