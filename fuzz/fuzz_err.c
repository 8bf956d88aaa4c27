/* Target: tf_strerror + tf_err_name */
/* fuzz_err -- the error texts over arbitrary values: every 4 input bytes are one value
 * (little-endian int32, then the same value squeezed into 0..127 so that every code gets hit).
 * Oracle: known codes give exactly the name and text of the hand-written table in
 * fuzz_common.h (fz_err_rows, not the X-macro list of err.h that the code is generated from),
 * unknown values give "UNKNOWN" and "unknown tcpframe error"; never NULL, never a crash. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4 && i + k < size; k++)
            v |= (uint32_t)data[i + k] << (8 * k);
        fz_check_err_text((tf_err)(int32_t)v);
        fz_check_err_text((tf_err)(v % 128u));
    }
    return 0;
}
