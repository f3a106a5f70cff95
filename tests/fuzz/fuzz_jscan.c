/*
 * fuzz_jscan: libFuzzer target for the JSON scanner and unquote. Checks that reported member
 * spans are in bounds and well typed, that string members unquote, and that a valid document
 * stays valid (with the same span) when nested as a member of another object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct bb_jscan_field f[] = {{.key = "model"}, {.key = "stream"}, {.key = "a"}, {.key = ""}};
    struct bb_err err;
    int r = bb_jscan_object(buf, size, f, 4, 16, &err);
    if (r == 0) {
        for (int i = 0; i < 4; i++) {
            if (f[i].type == BB_JNONE)
                continue;
            CHECK(f[i].off + f[i].len <= size && f[i].len > 0);
            char c = buf[f[i].off];
            switch (f[i].type) {
            case BB_JSTRING: {
                CHECK(c == '"');
                char *out = malloc(f[i].len);
                CHECK(bb_jscan_unquote(buf + f[i].off, f[i].len, out, f[i].len) >= 0);
                free(out);
                break;
            }
            case BB_JOBJECT:
                CHECK(c == '{');
                break;
            case BB_JARRAY:
                CHECK(c == '[');
                break;
            case BB_JBOOL:
                CHECK(c == 't' || c == 'f');
                break;
            case BB_JNULL:
                CHECK(c == 'n');
                break;
            case BB_JNUMBER:
                CHECK(c == '-' || (c >= '0' && c <= '9'));
                break;
            default:
                CHECK(0);
            }
        }
        /* {"w": <doc>} is valid and "w" spans the document without its surrounding space */
        char *wrap = malloc(size + 6);
        memcpy(wrap, "{\"w\":", 5);
        memcpy(wrap + 5, buf, size);
        wrap[size + 5] = '}';
        struct bb_jscan_field w[] = {{.key = "w"}};
        CHECK(bb_jscan_object(wrap, size + 6, w, 1, 17, &err) == 0);
        CHECK(w[0].type == BB_JOBJECT);
        free(wrap);
    } else {
        CHECK(strstr(err.msg, " at byte ") != NULL);
    }
    /* the strict scan of client bodies: accepts a subset, finds the same members */
    struct bb_jscan_field g[] = {{.key = "model"}, {.key = "stream"}, {.key = "a"}, {.key = ""}};
    int rs = bb_jscan_request(buf, size, g, 4, 16, &err);
    CHECK(rs == 0 || strstr(err.msg, " at byte ") != NULL);
    if (rs == 0) {
        CHECK(r == 0);
        for (int i = 0; i < 4; i++)
            CHECK(g[i].type == f[i].type && g[i].off == f[i].off && g[i].len == f[i].len);
    }
    /* the whole input as a string token */
    char out[64];
    long u = bb_jscan_unquote(buf, size, out, sizeof out);
    CHECK(u < (long)sizeof out);
    free(buf);
    return 0;
}
