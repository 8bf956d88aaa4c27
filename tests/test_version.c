/* test_version.c -- version.h and tf_version(): the library reports the header's version, the
 * hex form orders like the versions, and TF_VERSION_COMPATIBLE accepts exactly the same major
 * with a minor at least the header's. Expected values are computed here, not taken from the
 * macros under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tcpframe/version.h"

static uint32_t hex(unsigned major, unsigned minor, unsigned patch)
{
    return (uint32_t)(major << 16 | minor << 8 | patch); /* shifts: not the header's formula */
}

static void test_tf_version_matches_header(void **state)
{
    (void)state;
    assert_int_equal(tf_version(), hex(TF_VERSION_MAJOR, TF_VERSION_MINOR, TF_VERSION_PATCH));
    assert_int_equal(tf_version(), TF_VERSION);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TF_VERSION_MAJOR, TF_VERSION_MINOR, TF_VERSION_PATCH);
    assert_string_equal(tf_version_string(), want);
    assert_string_equal(TF_VERSION_STRING, want);
}

static void test_tf_version_hex_orders_versions(void **state)
{
    (void)state;
    assert_int_equal(TF_VERSION_HEX(0, 1, 0), 0x000100u);
    assert_int_equal(TF_VERSION_HEX(1, 2, 3), 0x010203u);
    assert_int_equal(TF_VERSION_HEX(255, 255, 255), 0xFFFFFFu);
    assert_true(TF_VERSION_HEX(0, 9, 99) < TF_VERSION_HEX(0, 10, 0));
    assert_true(TF_VERSION_HEX(1, 0, 0) > TF_VERSION_HEX(0, 255, 255));
}

static void test_tf_version_compatible_rule(void **state)
{
    (void)state;
    const unsigned M = TF_VERSION_MAJOR, m = TF_VERSION_MINOR;
    assert_true(TF_VERSION_COMPATIBLE(tf_version()));
    assert_true(TF_VERSION_COMPATIBLE(hex(M, m, 0)));
    assert_true(TF_VERSION_COMPATIBLE(hex(M, m, 255)));
    assert_true(TF_VERSION_COMPATIBLE(hex(M, m + 1, 0))); /* a newer minor: more functions */
    if (m > 0)
        assert_false(TF_VERSION_COMPATIBLE(hex(M, m - 1, 255))); /* an older minor may lack some */
    assert_false(TF_VERSION_COMPATIBLE(hex(M + 1, m, 0)));       /* another major: another ABI */
    if (M > 0)
        assert_false(TF_VERSION_COMPATIBLE(hex(M - 1, m, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_version_matches_header),
        cmocka_unit_test(test_tf_version_hex_orders_versions),
        cmocka_unit_test(test_tf_version_compatible_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
