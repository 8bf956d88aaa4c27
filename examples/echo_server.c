/* examples/echo_server.c -- an async echo server in message-stream mode (SPEC.md 9.7).
 *
 *   echo_server [ADDR [N]]    listen on ADDR (default "127.0.0.1:0": any free port), print
 *                             "listening on HOST:PORT", echo every message back; with N, stop
 *                             after N clients have gone.
 *
 *   cc echo_server.c $(pkg-config --cflags --libs tcpframe) -o echo_server
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tcpframe/async.h>

static int clients_left = -1; /* -1: serve forever */

/* The connection is over (closed after the client's half-close, failed, reset): free it. */
static void on_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)os_err, (void)arg;
    if (err != TF_ERR_CLOSED)
        fprintf(stderr, "echo_server: client: %s\n", tf_strerror(err));
    tf_evb *evb = tf_async_conn_evb(c);
    tf_async_conn_free(c); /* allowed from the connection's own callbacks */
    if (clients_left > 0 && --clients_left == 0)
        tf_evb_stop(evb);
}

/* One call per message, on the loop thread; data is valid during the call only. */
static void on_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                   void *arg)
{
    (void)os_err, (void)arg;
    if (err == TF_ERR_CLOSED) { /* the client sent everything: flush our echoes and close */
        tf_future *f;
        if (tf_async_conn_close(c, &f) == TF_OK)
            tf_future_free(f); /* on_end runs when the close is over */
        return;
    }
    if (err != TF_OK) /* the connection failed: on_end runs with the reason */
        return;
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return;
    memcpy(copy, data, len);
    tf_future *f; /* fire and forget: the library free()s the copy once it is sent */
    if (tf_async_conn_send_owned(c, copy, len, free, -1, &f) == TF_OK)
        tf_future_free(f);
    else
        free(copy);
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s, (void)arg;
    if (tf_async_conn_on_end(c, on_end, NULL) != TF_OK ||
        tf_async_conn_stream(c, on_msg, NULL) != TF_OK)
        tf_async_conn_free(c);
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:0";
    if (argc > 2)
        clients_left = atoi(argv[2]);
    tf_evb *evb;
    tf_async_server *srv;
    tf_errmsg msg;
    if (tf_evb_new(&evb) != TF_OK || tf_async_server_new(evb, &srv) != TF_OK)
        return fprintf(stderr, "echo_server: out of resources\n"), 1;
    tf_async_server_on_accept(srv, on_accept, NULL);
    if (tf_async_server_init(srv, addr, NULL, &msg) != TF_OK)
        return fprintf(stderr, "echo_server: %s\n", msg.text), 1;
    char bound[TF_ADDRSTR_LEN];
    tf_async_server_addr(srv, bound, sizeof bound);
    printf("listening on %s\n", bound);
    fflush(stdout);
    tf_err e = tf_evb_loop(evb); /* until tf_evb_stop() */
    tf_async_server_free(srv);
    tf_evb_free(evb);
    return e == TF_OK ? 0 : 1;
}
