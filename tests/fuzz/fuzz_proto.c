/*
 * fuzz_proto: one libFuzzer target per wire protocol (built with -DFUZZ_PROTO=BB_PROTO_X).
 * The first input byte picks what to exercise: the request reader, the response reader and
 * its writer, the error reader, or the stream path (framer → decoder → the same protocol's
 * encoder). Every path must return cleanly, leak nothing and trip no sanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/sse.h"
#include "worker/eventstream.h"
#include "worker/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct pipe {
    const struct bb_proto_ops *o;
    void *dec, *enc;
    struct evbuffer *out;
    struct bb_frame_state fst;
};

static int on_event(void *arg, const struct bb_ir_event *ev)
{
    struct pipe *p = arg;
    struct bb_arena scratch;
    bb_arena_init(&scratch, 1u << 24);
    int rc = p->o->enc_event(p->enc, &scratch, ev, p->out);
    bb_arena_free(&scratch);
    return rc < 0 ? 1 : 0;
}

static int frame(struct pipe *p, const struct bb_frame *f)
{
    struct bb_arena scratch;
    bb_arena_init(&scratch, 1u << 24);
    int rc = p->o->dec_frame(p->dec, &scratch, f, on_event, p);
    bb_arena_free(&scratch);
    /* the same-protocol relay's scan of the same frame (worker/relay.c) */
    struct bb_frame_info fi;
    p->o->frame_scan(f, &p->fst, &fi);
    return rc != 0;
}

static int on_sse(void *arg, const struct bb_sse_event *ev)
{
    struct bb_frame f = {ev->event, ev->event_len, ev->data, ev->data_len, false};
    return frame(arg, &f);
}

static int on_es(void *arg, const struct bb_eventstream_msg *m)
{
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    return frame(arg, &f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct bb_proto_ops *o = bb_proto_get(FUZZ_PROTO);
    if (!o->read_request || !o->read_response || !o->read_error || !o->dec_frame || !o->enc_event)
        return 0; /* module not built */
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    struct bb_arena a;
    bb_arena_init(&a, 1u << 26);
    struct bb_err err;
    static const struct bb_ingress_ctx ictx = {.request_id = "bb-fuzz",
                                               .model = "m",
                                               .created = 1700000000,
                                               .include_usage = true,
                                               .route_flags = 1};
    switch (data[0] % 4) {
    case 0: {
        struct bb_ir_request ir;
        memset(&ir, 0, sizeof ir);
        o->read_request(&a, in, n, (data[0] & 4) ? "m" : NULL, &ir, &err);
        break;
    }
    case 1: {
        struct bb_ir_response r;
        memset(&r, 0, sizeof r);
        if (o->read_response(&a, in, n, &r, &err) == 0) {
            struct evbuffer *out = evbuffer_new();
            o->write_response(&a, &r, &ictx, out);
            evbuffer_free(out);
        }
        break;
    }
    case 2: {
        struct bb_proto_error pe;
        o->read_error(in, n, &pe);
        struct bb_ir_usage u;
        memset(&u, 0, sizeof u);
        o->answer_check(in, n, &u, &pe); /* the commit point's check of a whole answer */
        break;
    }
    default: {
        struct pipe p = {
            o, calloc(1, o->dec_size + 1), calloc(1, o->enc_size + 1), evbuffer_new(), {0}};
        o->dec_init(p.dec);
        o->enc_init(p.enc, &ictx);
        if (o->framing == BB_FRAMING_EVENTSTREAM) {
            struct bb_eventstream es;
            bb_eventstream_init(&es, 1u << 20);
            bb_eventstream_feed(&es, in, n, on_es, &p);
            bb_eventstream_free(&es);
        } else {
            struct bb_sse s;
            bb_sse_init(&s, 1u << 20);
            bb_sse_feed(&s, in, n, on_sse, &p);
            bb_sse_free(&s);
        }
        if (o->enc_finish)
            o->enc_finish(p.enc, p.out);
        evbuffer_free(p.out);
        free(p.dec);
        free(p.enc);
        break;
    }
    }
    bb_arena_free(&a);
    return 0;
}
