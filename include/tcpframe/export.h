/* tcpframe/export.h -- TF_API, the mark of every public function (SPEC.md section 10).
 *
 * The library is compiled with -fvisibility=hidden and linked with a version script
 * (scripts/tcpframe.map), so libtcpframe.so exports exactly the functions declared with TF_API
 * in these headers: no tf__ internals, no test hooks. `make abi-check` (part of `make check`)
 * fails if the exported set and the TF_API declarations differ.
 *
 * For a user of the library TF_API is only a visibility attribute on a declaration: it changes
 * nothing in how a call is compiled, and the headers compile as C and as C++.
 */
#ifndef TCPFRAME_EXPORT_H
#define TCPFRAME_EXPORT_H

/* A build may predefine TF_API: the proof does (verify/wp.sh passes -DTF_API=), because Frama-C's
 * kernel takes a visibility attribute on a declaration for a qualifier of its return type, and
 * visibility means nothing to the proof. */
#if defined(TF_API)
#elif defined(__GNUC__) || defined(__clang__)
#define TF_API __attribute__((visibility("default")))
#else
#define TF_API
#endif

#endif /* TCPFRAME_EXPORT_H */
