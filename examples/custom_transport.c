/* examples/custom_transport.c -- the framing core over a transport it has never seen, driven
 * with the sans-I/O calls (SPEC.md 4-6; README "Adding a transport").
 *
 * The transport is an in-memory link that moves bytes in random chunks of 0 to 7 bytes per
 * call, like a completion-based transport (io_uring, TLS records, RDMA): you hand it a buffer,
 * it says how many bytes it took or delivered, maybe none this time. Nothing in proto/ knows
 * about it: each endpoint asks a machine where to read or write (tf_hs_out / tf_hs_in,
 * tf_tx_next, tf_rx_next) and tells it how many bytes moved (tf_hs_sent / tf_hs_received,
 * tf_tx_advance, tf_rx_advance). No tf_io, no fd, no syscall.
 *
 *   cc custom_transport.c $(pkg-config --cflags --libs tcpframe) -o custom_transport
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tcpframe/proto.h>

/* ---------------------------------------------------------------- the transport */

typedef struct link { /* one direction: a 256-byte ring */
    uint8_t ring[256];
    size_t head, fill;
} link;

static uint32_t seed = 2463534242u;
static size_t chunk(void) /* 0..7: how much the transport moves this time */
{
    seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
    return seed % 8u;
}

static size_t link_write(link *l, const uint8_t *p, size_t n)
{
    size_t k = chunk(), room = sizeof l->ring - l->fill;
    k = k < n ? k : n;
    k = k < room ? k : room;
    for (size_t i = 0; i < k; i++)
        l->ring[(l->head + l->fill++) % sizeof l->ring] = p[i];
    return k;
}

static size_t link_read(link *l, uint8_t *p, size_t n)
{
    size_t k = chunk();
    k = k < n ? k : n;
    k = k < l->fill ? k : l->fill;
    for (size_t i = 0; i < k; i++, l->fill--, l->head = (l->head + 1) % sizeof l->ring)
        p[i] = l->ring[l->head];
    return k;
}

/* ---------------------------------------------------------------- an endpoint */

typedef struct endpoint {
    const char *name;
    link *out, *in;
    tf_hs hs;
    tf_tx tx;
    tf_rx rx;
    const char **send;   /* messages to send, NULL-terminated */
    const char **expect; /* messages the peer sends, NULL-terminated */
    int sent, received;
} endpoint;

static void die(const endpoint *e, const char *what, tf_err err)
{
    fprintf(stderr, "custom_transport: %s: %s: %s\n", e->name, what, tf_strerror(err));
    exit(1);
}

/* One round of work for |e|; returns nonzero once it has sent and received everything. */
static int step(endpoint *e)
{
    const uint8_t *o;
    uint8_t *b;
    size_t n;
    if (tf_hs_wants(&e->hs) != 0) { /* the handshake: 4 magic bytes each way */
        if ((n = tf_hs_out(&e->hs, &o)) > 0 && tf_hs_sent(&e->hs, link_write(e->out, o, n)) < 0)
            die(e, "handshake", tf_hs_error(&e->hs, NULL));
        if ((n = tf_hs_in(&e->hs, &b)) > 0 && tf_hs_received(&e->hs, link_read(e->in, b, n)) < 0)
            die(e, "handshake", tf_hs_error(&e->hs, NULL));
        return 0;
    }
    if (tf_hs_error(&e->hs, NULL) != TF_OK)
        die(e, "handshake", tf_hs_error(&e->hs, NULL));

    /* Sending: begin the next message when idle, write what tf_tx_next offers (the rest of
     * the prefix, then of the payload: a transport with gather writes takes iov[1] too), and
     * acknowledge what the transport took. */
    tf_iov iov[2];
    if (tf_tx_pending(&e->tx) == 0 && e->send[e->sent] != NULL) {
        const char *m = e->send[e->sent];
        if (tf_tx_begin(&e->tx, (const uint8_t *)m, strlen(m)) != TF_OK)
            die(e, "send", tf_tx_error(&e->tx, NULL));
    }
    if (tf_tx_next(&e->tx, iov) > 0) {
        tf_step st = tf_tx_advance(&e->tx, link_write(e->out, iov[0].base, iov[0].len));
        if (st == TF_ERROR)
            die(e, "send", tf_tx_error(&e->tx, NULL));
        if (st == TF_DONE)
            e->sent++;
    }

    /* Receiving: a target of the exact length once the prefix is in, then the payload. */
    size_t len;
    if (tf_rx_wants_target(&e->rx, &len) &&
        tf_rx_set_target(&e->rx, malloc(len), len) != TF_OK) /* NULL: NOMEM */
        die(e, "receive", tf_rx_error(&e->rx, NULL));
    if ((n = tf_rx_next(&e->rx, &b)) > 0) {
        tf_msg msg;
        tf_step st = tf_rx_advance(&e->rx, link_read(e->in, b, n), &msg);
        if (st == TF_ERROR)
            die(e, "receive", tf_rx_error(&e->rx, NULL));
        if (st == TF_DONE) {
            const char *want = e->expect[e->received++];
            if (want == NULL || msg.len != strlen(want) ||
                (msg.len > 0 && memcmp(msg.data, want, msg.len) != 0))
                die(e, "receive: unexpected message", TF_OK);
            free(msg.data); /* ours: we gave the target (NULL for an empty message) */
        }
    }
    return e->send[e->sent] == NULL && e->expect[e->received] == NULL;
}

int main(void)
{
    static char big[100000];
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = (char)('a' + i % 26);
    const char *a_says[] = {"hello", "", big, "bye", NULL};
    const char *b_says[] = {"hi", "", "over and out", NULL};
    link ab = {.fill = 0}, ba = {.fill = 0};
    endpoint a = {.name = "A", .out = &ab, .in = &ba, .send = a_says, .expect = b_says};
    endpoint b = {.name = "B", .out = &ba, .in = &ab, .send = b_says, .expect = a_says};
    endpoint *both[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        tf_hs_init(&both[i]->hs);
        tf_tx_init(&both[i]->tx, TF_DEFAULT_MAX_LEN);
        tf_rx_init(&both[i]->rx, TF_DEFAULT_MAX_LEN);
    }
    long rounds = 0;
    int done_a = 0, done_b = 0;
    while (!(done_a && done_b)) {
        done_a = step(&a);
        done_b = step(&b);
        if (++rounds > 10000000)
            return fprintf(stderr, "custom_transport: no progress\n"), 1;
    }
    printf("custom_transport: A sent %d and B sent %d messages, checked, in %ld rounds of "
           "0..7-byte chunks\n",
           a.sent, b.sent, rounds);
    return 0;
}
