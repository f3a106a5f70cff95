/*
 * fuzz_jdom: libFuzzer target holding the one-pass parser and the DOM writer (worker/jdom.c) to
 * json-c. bb_json_parse must give bb_json_parse_ref's verdict, message and tree (compared by
 * json-c's own serialisation of both), and bb_jdom_write must write json-c's bytes for it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "worker/jdom.h"
#include "worker/json.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define OUT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* json-c's text for o, copied (the next call on o would overwrite it). */
static char *jsonc_text(json_object *o, size_t *n)
{
    const char *s = json_object_to_json_string_length(o, OUT_FLAGS, n);
    CHECK(s);
    char *c = malloc(*n + 1);
    memcpy(c, s, *n + 1);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct bb_err eref = {0}, egot = {0};
    json_object *ref = bb_json_parse_ref(buf, size, "doc", &eref);
    json_object *got = bb_json_parse(buf, size, "doc", &egot);
    CHECK(!ref == !got);
    if (!ref) {
        CHECK(strcmp(eref.msg, egot.msg) == 0);
    } else {
        size_t rn, gn;
        char *rt = jsonc_text(ref, &rn), *gt = jsonc_text(got, &gn);
        CHECK(rn == gn && memcmp(rt, gt, rn) == 0);
        /* the writer's bytes are json-c's */
        struct evbuffer *b = evbuffer_new();
        CHECK(b && bb_jdom_write(b, NULL, got, NULL) == 0);
        CHECK(evbuffer_get_length(b) == rn && memcmp(evbuffer_pullup(b, -1), rt, rn) == 0);
        evbuffer_free(b);
        free(rt);
        free(gt);
    }
    json_object_put(ref);
    json_object_put(got);
    free(buf);
    return 0;
}
