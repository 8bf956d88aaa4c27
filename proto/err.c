/* err.c -- tf_strerror() and tf_err_name(), generated from TF_ERR_LIST (see tcpframe/err.h). */
#include "tcpframe/err.h"

/*@ assigns \nothing;
    ensures \result != \null;
*/
const char *tf_strerror(tf_err e)
{
    switch (e) {
#define TF_ERR_TEXT_(name, num, text)                                                            \
    case TF_ERR_##name:                                                                          \
        return text;
        TF_ERR_LIST(TF_ERR_TEXT_)
#undef TF_ERR_TEXT_
    default:
        return "unknown tcpframe error";
    }
}

/*@ assigns \nothing;
    ensures \result != \null;
*/
const char *tf_err_name(tf_err e)
{
    switch (e) {
#define TF_ERR_NAME_(name, num, text)                                                            \
    case TF_ERR_##name:                                                                          \
        return #name;
        TF_ERR_LIST(TF_ERR_NAME_)
#undef TF_ERR_NAME_
    default:
        return "UNKNOWN";
    }
}
