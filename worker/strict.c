/*
 * strict: refuse a translation that drops fields when the client asked (see strict.h).
 * Worker process.
 */
#include "worker/strict.h"

#include <stdio.h>
#include <string.h>

#include "worker/http_server.h"
#include "worker/request.h"

/* "true", "1" or "yes", in any case. */
static bool yes(const struct bb_http_header *h)
{
    static const char *const on[] = {"true", "1", "yes"};
    for (size_t i = 0; h && i < sizeof on / sizeof on[0]; i++)
        if (bb_http_ieq(h->value, h->value_len, on[i]))
            return true;
    return false;
}

bool bb_proto_strict(struct bb_request *req, const struct bb_proto_ops *eops, const char *dropped)
{
    if (!dropped || !*dropped || !yes(bb_http_find(&req->head, BB_STRICT_HEADER)))
        return false;
    char msg[900];
    snprintf(msg, sizeof msg,
             "strict translation (" BB_STRICT_HEADER "): the %s lane that serves this request "
             "cannot carry: %.700s",
             bb_proto_name(eops->id), dropped);
    bb_request_fail(req, BB_ERR_UNTRANSLATABLE, msg);
    return true;
}
