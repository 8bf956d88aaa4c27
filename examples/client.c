/* examples/client.c -- a blocking client (SPEC.md 9.6): sends each argument as one message,
 * waits for its echo and checks it.
 *
 *   client ADDR MESSAGE...    e.g. client 127.0.0.1:7000 hello world
 *
 *   cc client.c $(pkg-config --cflags --libs tcpframe) -o client
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tcpframe/sync.h>
#include <tcpframe/version.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: client ADDR MESSAGE...\n"), 2;
    /* The library this runs with must be at least the header it was compiled against. */
    if (!TF_VERSION_COMPATIBLE(tf_version()))
        return fprintf(stderr, "client: built for tcpframe %s, running with %s\n",
                       TF_VERSION_STRING, tf_version_string()),
               1;
    tf_errmsg msg;
    tf_sync_conn *c;
    if (tf_sync_connect(argv[1], NULL, &c, NULL, &msg) != TF_OK) /* resolve, connect, magic */
        return fprintf(stderr, "client: %s\n", msg.text), 1;
    int status = 0;
    for (int i = 2; i < argc && status == 0; i++) {
        size_t len = strlen(argv[i]), n;
        void *echo;
        tf_err e = tf_sync_conn_send(c, argv[i], len, 5000); /* timeouts in ms */
        if (e == TF_OK)
            e = tf_sync_conn_recv_alloc(c, &echo, &n, 5000); /* malloc()'d, exact length */
        if (e != TF_OK) {
            int os_err;
            tf_sync_conn_error(c, &os_err);
            fprintf(stderr, "client: %s%s%s\n", tf_strerror(e), os_err ? ": " : "",
                    os_err ? strerror(os_err) : "");
            status = 1;
        } else if (n != len || (len > 0 && memcmp(echo, argv[i], len) != 0)) {
            fprintf(stderr, "client: the echo of \"%s\" differs\n", argv[i]);
            status = 1;
        } else {
            printf("%.*s\n", (int)n, (const char *)echo);
        }
        if (e == TF_OK)
            free(echo);
    }
    tf_sync_conn_free(c); /* closes the socket: the server sees CLOSED */
    return status;
}
