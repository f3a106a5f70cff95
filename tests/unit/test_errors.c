/*
 * test_errors: busbar's own errors in every ingress dialect (worker/errors_http.c and each
 * module's ops->errors): for each protocol, each error kind's status, header lines and body,
 * and relayed upstream statuses, against one transcript (tests/fixtures/errors/render.txt;
 * BB_UPDATE_GOLDEN=1 rewrites it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FIX "../fixtures/errors/"
#include "proto_test_common.h"
#include "worker/errors_http.h"

static const char *const kind_names[] = {
#define X(k, s, t, c) #k,
    BB_ERRKIND_LIST(X)
#undef X
};

/* Header lines with their CRLFs shown as "\\r\\n" (the transcript stays one line each). */
static const char *shown(const char *h)
{
    static char buf[1024];
    size_t o = 0;
    for (; *h && o + 4 < sizeof buf; h++) {
        if (*h == '\r' || *h == '\n') {
            buf[o++] = '\\';
            buf[o++] = *h == '\r' ? 'r' : 'n';
        } else {
            buf[o++] = *h;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void test_render(void **state)
{
    (void)state;
    static const int statuses[] = {400, 401, 402, 403, 404, 409, 413, 422,
                                   429, 500, 501, 502, 503, 504, 529};
    size_t cap = 1 << 20, len = 0;
    char *t = calloc(1, cap);
    char body[1024], hdrs[512];
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        const char *name = bb_proto_get((enum bb_proto)p)->name;
        for (int k = 0; k < BB_ERR__COUNT; k++) {
            size_t n = bb_errors_render((enum bb_proto)p, (enum bb_errkind)k, "a \"quoted\" msg",
                                        body, sizeof body);
            bb_errors_kind_headers((enum bb_proto)p, (enum bb_errkind)k, hdrs, sizeof hdrs);
            len += (size_t)snprintf(t + len, cap - len, "%s %s %d [%s] %.*s\n", name, kind_names[k],
                                    bb_errkind_status_in((enum bb_proto)p, (enum bb_errkind)k),
                                    shown(hdrs), (int)n, body);
        }
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
            int st = statuses[i];
            size_t n = bb_errors_render_status((enum bb_proto)p, st, i % 2 ? "some_code" : NULL,
                                               "upstream said no", body, sizeof body);
            bb_errors_headers((enum bb_proto)p, st, hdrs, sizeof hdrs);
            len +=
                (size_t)snprintf(t + len, cap - len, "%s status %d %s [%s] %.*s\n", name, st,
                                 bb_errors_type((enum bb_proto)p, st), shown(hdrs), (int)n, body);
        }
    }
    assert_text_golden(t, len, "render.txt");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
