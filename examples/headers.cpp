// examples/headers.cpp -- every public header in a C++ translation unit (SPEC.md 10): the
// headers compile as C++ (extern "C", no C-only syntax) and the library links into a C++
// program. Frames one message through the core into a buffer and back, no I/O at all.
//
//   c++ headers.cpp $(pkg-config --cflags --libs tcpframe) -o headers
#include <tcpframe/async.h>
#include <tcpframe/conn.h>
#include <tcpframe/err.h>
#include <tcpframe/evbase.h>
#include <tcpframe/export.h>
#include <tcpframe/fdio.h>
#include <tcpframe/future.h>
#include <tcpframe/proto.h>
#include <tcpframe/sync.h>
#include <tcpframe/tcp.h>
#include <tcpframe/version.h>

#include <cstdio>
#include <cstring>

int main()
{
    if (!TF_VERSION_COMPATIBLE(tf_version())) {
        std::fprintf(stderr, "headers: built for %s, running with %s\n", TF_VERSION_STRING,
                     tf_version_string());
        return 1;
    }
    // Encode "hi" with the sender (sans-I/O), decode it with the receiver's batched feed.
    tf_tx tx;
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    if (tf_tx_begin(&tx, reinterpret_cast<const uint8_t *>("hi"), 2) != TF_OK)
        return 1;
    uint8_t wire[16];
    size_t n = 0;
    tf_iov iov[2];
    while (size_t k = tf_tx_next(&tx, iov)) {
        for (size_t i = 0; i < k; i++) {
            std::memcpy(wire + n, iov[i].base, iov[i].len);
            n += iov[i].len;
        }
        tf_tx_advance(&tx, iov[0].len + (k > 1 ? iov[1].len : 0));
    }
    tf_rx rx;
    tf_rx_init(&rx, TF_DEFAULT_MAX_LEN);
    uint8_t buf[8];
    size_t used = 0, off = 0;
    tf_msg msg;
    tf_step st = tf_rx_feed(&rx, wire, n, &used, &msg);
    off += used;
    if (st == TF_AGAIN && tf_rx_wants_target(&rx, nullptr)) {
        tf_rx_set_target(&rx, buf, sizeof buf);
        st = tf_rx_feed(&rx, wire + off, n - off, &used, &msg);
    }
    if (st != TF_DONE || msg.len != 2 || std::memcmp(msg.data, "hi", 2) != 0)
        return std::fprintf(stderr, "headers: round trip failed\n"), 1;
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    std::printf("headers: tcpframe %s from C++: %zu wire bytes; %s; config %s\n",
                tf_version_string(), n, tf_err_name(TF_ERR_TOO_LARGE),
                tf_tcp_config_validate(&cfg, nullptr) == TF_OK ? "valid" : "invalid");
    return 0;
}
