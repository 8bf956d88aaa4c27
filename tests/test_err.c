/* test_err.c -- tf_strerror() and tf_err_name() for every code and for unknown codes. */
#include <string.h>

#include "proto_util.h"
#include "tcpframe/err.h"

typedef struct err_row {
    tf_err e;
    int num;
    const char *name;
    const char *text;
} err_row;

/* The expected table, written out by hand (not from TF_ERR_LIST) so a drift is caught. */
static const err_row rows[] = {
    {TF_ERR_OK, 0, "OK", "success"},
    {TF_ERR_BAD_MAGIC, 1, "BAD_MAGIC",
     "handshake magic mismatch: the peer is not a tcpframe/uniflow endpoint"},
    {TF_ERR_TOO_LARGE, 2, "TOO_LARGE", "message length exceeds the maximum message size"},
    {TF_ERR_BUFFER_TOO_SMALL, 3, "BUFFER_TOO_SMALL", "message does not fit the receive buffer"},
    {TF_ERR_BAD_STATE, 4, "BAD_STATE", "operation not valid in the current state"},
    {TF_ERR_INVALID_ARGUMENT, 5, "INVALID_ARGUMENT", "invalid argument"},
    {TF_ERR_CLOSED, 6, "CLOSED", "peer closed the connection"},
    {TF_ERR_TRUNCATED, 7, "TRUNCATED",
     "peer closed the connection in the middle of a message or handshake"},
    {TF_ERR_NOMEM, 8, "NOMEM", "out of memory"},
    {TF_ERR_IO, 9, "IO", "I/O failed; the OS error number is kept with the error"},
    {TF_ERR_BUSY, 64, "BUSY", "another operation of this kind is already in flight"},
    {TF_ERR_NOT_CONNECTED, 65, "NOT_CONNECTED", "not connected"},
    {TF_ERR_TIMEOUT, 66, "TIMEOUT", "timed out"},
    {TF_ERR_CANCELLED, 67, "CANCELLED",
     "cancelled: the promise was dropped before it was fulfilled"},
    {TF_ERR_SHUTDOWN, 68, "SHUTDOWN", "the event loop is stopped or shutting down"},
    {TF_ERR_BAD_ADDRESS, 69, "BAD_ADDRESS", "bad address: expected host:port or [ipv6]:port"},
    {TF_ERR_PEER_DENIED, 70, "PEER_DENIED",
     "the peer's credentials are not allowed here (Unix-domain uid rule)"},
    {TF_ERR_TLS, 71, "TLS", "TLS failed (handshake or record); os_err holds OpenSSL's reason code"},
    {TF_ERR_TLS_VERIFY, 72, "TLS_VERIFY",
     "the peer's certificate failed verification; os_err holds the X.509 code"},
};

static void test_tf_strerror_every_code(void **state)
{
    (void)state;
    for (size_t i = 0; i < PU_ARRAY_LEN(rows); i++) {
        assert_int_equal((int)rows[i].e, rows[i].num);
        assert_string_equal(tf_strerror(rows[i].e), rows[i].text);
    }
    assert_int_equal(TF_OK, TF_ERR_OK);
}

static void test_tf_err_name_every_code(void **state)
{
    (void)state;
    for (size_t i = 0; i < PU_ARRAY_LEN(rows); i++)
        assert_string_equal(tf_err_name(rows[i].e), rows[i].name);
}

/* Every code the X-macro list defines is in the table above (nothing added without a test). */
static void test_tf_err_name_list_matches_table(void **state)
{
    (void)state;
    size_t n = 0;
#define COUNT_(nm_, num_, text_)                                                                  \
    do {                                                                                         \
        int found = 0;                                                                           \
        for (size_t i = 0; i < PU_ARRAY_LEN(rows); i++)                                          \
            found |= rows[i].num == (num_) && strcmp(rows[i].name, #nm_) == 0 &&                 \
                     strcmp(rows[i].text, (text_)) == 0;                                          \
        assert_true(found);                                                                      \
        n++;                                                                                     \
    } while (0);
    TF_ERR_LIST(COUNT_)
#undef COUNT_
    assert_int_equal(n, PU_ARRAY_LEN(rows));
}

/* Names and texts are distinct, so a log line identifies the code. */
static void test_tf_strerror_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < PU_ARRAY_LEN(rows); i++)
        for (size_t j = i + 1; j < PU_ARRAY_LEN(rows); j++) {
            assert_string_not_equal(tf_strerror(rows[i].e), tf_strerror(rows[j].e));
            assert_string_not_equal(tf_err_name(rows[i].e), tf_err_name(rows[j].e));
        }
}

static void test_tf_strerror_unknown_code(void **state)
{
    (void)state;
    static const int unknown[] = {-1, 10, 63, 73, 127, 1000, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < PU_ARRAY_LEN(unknown); i++) {
        tf_err e = (tf_err)unknown[i];
        assert_string_equal(tf_strerror(e), "unknown tcpframe error");
        assert_string_equal(tf_err_name(e), "UNKNOWN");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_strerror_every_code),
        cmocka_unit_test(test_tf_err_name_every_code),
        cmocka_unit_test(test_tf_err_name_list_matches_table),
        cmocka_unit_test(test_tf_strerror_distinct),
        cmocka_unit_test(test_tf_strerror_unknown_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
