/*
 * fuzz_request: libFuzzer target for the whole client request path, not only its parsers.
 * One input is the byte stream a client sends on one connection. It goes through the real
 * worker code: http_server (head scan and parse, limits, pipelining, chunked and
 * Content-Length bodies, 100-continue, HEAD), request routing for every route (including the
 * model-in-path ones) with errors in each dialect, authentication on the head (virtual keys on
 * every carrier, SigV4 and its body hash), admission (the body scan, duplicate members,
 * governance) and the attempt loop with every protocol writer, up to the finished upstream
 * request. No network: the connection is one end of a socketpair, and bb_upstream_* are stubs
 * defined here. Oracles besides ASan/UBSan/LeakSanitizer:
 *   - every upstream request busbar builds is a well-formed HTTP/1.1 request whose
 *     Content-Length matches its body (nothing from the client can break the framing);
 *   - the first response on the connection has a well-formed head, only the header names
 *     busbar writes (a client byte that started a line of its own would show), no header
 *     value with a CR/LF/CTL, and no 5xx other than those a failed attempt gives.
 * The stub fails some attempts (as a refused connect would) and answers the others with a
 * valid non-stream answer in the lane's protocol, chosen by the request's bytes, so both the
 * failover path and the success path (answer translation, response head) run.
 *
 * HTTP/2: an input that starts with the connection preface is h2c with prior knowledge, so
 * the same stream goes through worker/h2.c (frames, HPACK, CONTINUATION, flow control, resets,
 * the flood bounds) into the same request path. Oracle for it: the server's bytes are a
 * well-formed sequence of frames whose header blocks decode (HPACK, with nghttp2's own
 * inflater) to lower-case names busbar writes and valid values.
 *
 * Seeds: tests/fuzz/corpus/request, recorded from the integration suite by
 * tests/fuzz/record_seeds.sh (every connection a test opens to busbar, keys rewritten to the
 * ones configured below), and the HTTP/2 seeds (h2-*) written by tests/fuzz/h2_seeds.py.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "common/config.h"
#include "common/http_parse.h"
#include "common/keys_shm.h"
#include "common/log.h"
#include "common/ring.h"
#include "common/runtime.h"
#include "common/shm.h"
#include "worker/auth.h"
#include "worker/endpoints.h"
#include "worker/http_server.h"
#include "worker/obs.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_request: check failed: %s (line %d)\n", #c, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The keys of the fuzz configuration (record_seeds.sh rewrites the suite's keys to these). */
#define KEY_ALL "sk-fuzz-all-0123456789"
#define KEY_Q "sk-fuzz-q-0123456789"
#define KEY_TIGHT "sk-fuzz-tight-0123456789"
#define AWS_ID "AKIDFUZZ0123456789"
#define AWS_SECRET "fuzzsecret0123456789"

static const char config_yaml[] =
    "listen: \"127.0.0.1:9\"\n"
    "workers: 1\n"
    "state_dir: /tmp\n"
    "log_level: error\n"
    "auth: { mode: keys }\n"
    "limits: { request_body_max_bytes: 65536, header_max_bytes: 8192 }\n"
    "providers:\n"
    "  p_openai: { protocol: openai, base_url: \"http://127.0.0.1:9\", api_key_env: FZ_KEY }\n"
    "  p_responses: { protocol: openai-responses, base_url: \"http://127.0.0.1:9\","
    " api_key_env: FZ_KEY }\n"
    "  p_anthropic: { protocol: anthropic, base_url: \"http://127.0.0.1:9\","
    " api_key_env: FZ_KEY }\n"
    "  p_gemini: { protocol: gemini, base_url: \"http://127.0.0.1:9\", api_key_env: FZ_KEY }\n"
    "  p_bedrock: { protocol: bedrock, base_url: \"http://127.0.0.1:9\","
    " api_key_env: FZ_AWS, region: us-east-1 }\n"
    "  p_cohere: { protocol: cohere, base_url: \"http://127.0.0.1:9\", api_key_env: FZ_KEY }\n"
    "models:\n"
    "  oa: { provider: p_openai, upstream_model: m, price: { input: 1, output: 2 } }\n"
    "  rs: { provider: p_responses, upstream_model: m }\n"
    "  an: { provider: p_anthropic, upstream_model: m, reasoning: true }\n"
    "  ge: { provider: p_gemini, upstream_model: m }\n"
    "  be: { provider: p_bedrock, upstream_model: m }\n"
    "  co: { provider: p_cohere, upstream_model: m }\n"
    "pools:\n"
    /* the pool names the recorded seeds use; most try every egress protocol in turn */
    "  p: { members: [ {target: oa}, {target: an}, {target: ge}, {target: be}, {target: co},"
    " {target: rs} ], failover: { max_hops: 5 } }\n"
    "  t: { members: [ {target: an}, {target: ge}, {target: be}, {target: co}, {target: rs},"
    " {target: oa} ], failover: { max_hops: 5 } }\n"
    "  mix: { members: [ {target: be}, {target: co}, {target: ge}, {target: an}, {target: oa},"
    " {target: rs} ], failover: { max_hops: 5 } }\n"
    "  q: { members: [ {target: oa} ] }\n"
    "  s: { members: [ {target: an}, {target: oa} ], stream: { on_cut: continue } }\n"
    "  g_openai: { members: [ {target: oa} ] }\n"
    "  g_responses: { members: [ {target: rs} ] }\n"
    "  g_anthropic: { members: [ {target: an} ] }\n"
    "  g_gemini: { members: [ {target: ge} ] }\n"
    "  g_bedrock: { members: [ {target: be} ] }\n"
    "  g_cohere: { members: [ {target: co} ] }\n"
    "  two: { members: [ {target: ge}, {target: be} ], failover: { max_hops: 1 } }\n"
    "  eq: { members: [ {target: co}, {target: rs} ], failover: { max_hops: 1 } }\n";

static const char providers_yaml[] =
    "unused: { protocol: openai, base_url: \"http://127.0.0.1:9\" }\n";

static struct bb_runtime rt;
static struct bb_worker w;
static unsigned upstream_requests;

/* ---- the upstream stub ---- */

int bb_upstream_init(struct bb_worker *wk)
{
    (void)wk;
    return 0;
}

void bb_upstream_shutdown(struct bb_worker *wk)
{
    (void)wk;
}

/* A complete answer in each egress protocol, so the success path (the commit point, the
 * answer's translation and the response head with x-busbar-* headers) runs too. */
static const char *const answers[BB_PROTO__COUNT] = {
    [BB_PROTO_OPENAI] =
        "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
        "\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":1,\"total_tokens\":2}}",
    [BB_PROTO_RESPONSES] =
        "{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":"
        "\"completed\",\"model\":\"m\",\"output\":[{\"type\":\"message\",\"id\":"
        "\"msg_1\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{"
        "\"type\":\"output_text\",\"text\":\"hi\",\"annotations\":[]}]}],"
        "\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}",
    [BB_PROTO_ANTHROPIC] =
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
        "\"m\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],\"stop_reason\":"
        "\"end_turn\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
    [BB_PROTO_GEMINI] = "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":"
                        "\"hi\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{"
                        "\"promptTokenCount\":1,\"candidatesTokenCount\":1,\"totalTokenCount\":2}}",
    [BB_PROTO_BEDROCK] = "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":"
                         "\"hi\"}]}},\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":1,"
                         "\"outputTokens\":1,\"totalTokens\":2}}",
    [BB_PROTO_COHERE] =
        "{\"id\":\"c1\",\"finish_reason\":\"COMPLETE\",\"message\":{\"role\":"
        "\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]},\"usage\":{"
        "\"billed_units\":{\"input_tokens\":1,\"output_tokens\":1},\"tokens\":{"
        "\"input_tokens\":1,\"output_tokens\":1}}}",
};

#define FAKE_MAGIC 0x46414b45u

/* The stub's exchange: answered from the event loop (never from inside bb_upstream_start),
 * with the module's contract: a cancel from inside a callback takes effect on return, and the
 * exchange is gone before on_end runs. */
struct bb_upconn {
    uint32_t magic;
    struct event *ev;
    const struct bb_upstream_cbs *cbs;
    void *arg;
    enum bb_proto proto;
    bool in_cb, cancelled;
};

static void fake_free(struct bb_upconn *u)
{
    event_free(u->ev);
    u->magic = 0;
    free(u);
}

static void fake_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_upconn *u = arg;
    CHECK(u->magic == FAKE_MAGIC);
    const char *body = answers[u->proto];
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      strlen(body));
    BB_HTTP_HEAD(h);
    CHECK(bb_http_parse_response(head, (size_t)hl, &h) == hl);
    u->in_cb = true;
    int rc = u->cbs->on_head(u->arg, &h);
    if (rc == 0 && !u->cancelled)
        rc = u->cbs->on_body(u->arg, body, strlen(body));
    u->in_cb = false;
    const struct bb_upstream_cbs *cbs = u->cbs;
    void *a = u->arg;
    bool done = rc == 0 && !u->cancelled;
    fake_free(u);
    if (done)
        cbs->on_end(a);
}

/* Oracle: the request busbar would send is well-formed HTTP/1.1 with a body of exactly its
 * Content-Length. Then, decided by the request's bytes, the attempt fails like a refused
 * connect or is answered with a valid non-stream answer (streams always fail). */
struct bb_upconn *bb_upstream_start(struct bb_worker *wk, int provider, struct evbuffer *request,
                                    const struct bb_upstream_deadlines *dl,
                                    const struct bb_upstream_cbs *cbs, void *arg)
{
    (void)dl;
    CHECK(provider >= 0 && (size_t)provider < rt.conf->n_providers);
    size_t n = evbuffer_get_length(request);
    const char *p = (const char *)evbuffer_pullup(request, (ev_ssize_t)n);
    BB_HTTP_HEAD(h);
    int st;
    int r = bb_http_parse_request(p, n, &h, &st);
    CHECK(r > 0);
    CHECK(h.minor_version == 1 && bb_http_find(&h, "host"));
    CHECK(!h.chunked && h.content_length >= 0);
    CHECK((size_t)r + (size_t)h.content_length == n);
    for (size_t i = 0; i < h.n_headers; i++)
        CHECK(bb_http_field_value_ok(h.headers[i].value, h.headers[i].value_len));
    upstream_requests++;
    bool stream = memmem(h.target, h.target_len, "tream", 5) ||
                  memmem(p + r, (size_t)h.content_length, "\"stream\":true", 13);
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < n; i++)
        hash = (hash ^ (unsigned char)p[i]) * 16777619u;
    if (stream || hash % 3 == 0)
        return NULL;
    struct bb_upconn *u = calloc(1, sizeof *u);
    CHECK(u);
    u->magic = FAKE_MAGIC;
    u->cbs = cbs;
    u->arg = arg;
    u->proto = rt.conf->providers[provider].protocol;
    u->ev = evtimer_new(wk->base, fake_answer, u);
    CHECK(u->ev);
    struct timeval now = {0, 0};
    evtimer_add(u->ev, &now);
    return u;
}

void bb_upstream_cancel(struct bb_upconn *u)
{
    if (!u)
        return;
    CHECK(u->magic == FAKE_MAGIC);
    if (u->in_cb)
        u->cancelled = true;
    else
        fake_free(u);
}

void bb_upstream_pause(struct bb_upconn *u, bool paused)
{
    (void)paused;
    CHECK(!u || u->magic == FAKE_MAGIC);
}

int bb_upstream_policy_host(const struct bb_worker *wk, int pool)
{
    return (int)wk->conf->n_providers + pool;
}

const char *bb_upfail_name(enum bb_upfail why)
{
    (void)why;
    return "stub";
}

/* ---- setup ---- */

static void put_key(const char *secret, const char *id, const char *pool, uint32_t rpm, bool aws)
{
    struct bb_keys_limits l;
    memset(&l, 0, sizeof l);
    bb_keys_hash_secret(secret, strlen(secret), l.secret_sha256);
    snprintf(l.id, sizeof l.id, "%s", id);
    l.enabled = 1;
    l.rpm = rpm;
    if (pool) {
        l.n_pools = 1;
        l.pool_hash[0] = bb_keys_pool_hash(pool, strlen(pool));
    }
    if (aws) {
        snprintf(l.aws_access_key_id, sizeof l.aws_access_key_id, "%s", AWS_ID);
        snprintf(l.aws_secret, sizeof l.aws_secret, "%s", AWS_SECRET);
    }
    CHECK(bb_keys_put(&rt.shm->keys, &l, 0, bb_wall_ms()) >= 0);
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/fuzz_request-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    bb_log_set_level(BB_LOG_CRIT);
    setenv("FZ_KEY", "sk-provider-fuzz", 1);
    setenv("FZ_AWS", "AKIDPROVIDER:providersecret", 1);
    char *cfg = write_temp(config_yaml), *prov = write_temp(providers_yaml);
    struct bb_conf_errors errs;
    memset(&errs, 0, sizeof errs);
    struct bb_conf *conf = bb_conf_load(cfg, prov, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%d:%d: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].col,
                errs.v[i].msg);
    CHECK(conf);
    unlink(cfg);
    unlink(prov);
    free(cfg);
    free(prov);
    rt.conf = conf;
    rt.shm = bb_shm_create();
    CHECK(rt.shm);
    rt.generation = 1;
    rt.lane_prices = calloc(conf->n_lanes, sizeof *rt.lane_prices);
    CHECK(rt.lane_prices);
    for (size_t i = 0; i < conf->n_lanes; i++)
        CHECK(bb_shm_cell_intern(rt.shm, conf->lanes[i].name));
    for (size_t p = 0; p < conf->n_pools; p++)
        for (size_t m = 0; m < conf->pools[p].n_members; m++) {
            char name[BB_SHM_NAME_MAX];
            snprintf(name, sizeof name, "%s/%s", conf->pools[p].name,
                     conf->lanes[conf->pools[p].members[m].lane].name);
            CHECK(bb_shm_cell_intern(rt.shm, name));
        }
    put_key(KEY_ALL, "vk_all", NULL, 0, true);
    put_key(KEY_Q, "vk_q", "q", 0, false);
    put_key(KEY_TIGHT, "vk_tight", NULL, 2, false);

    w.magic = BB_MAGIC_WORKER;
    w.rt = &rt;
    w.conf = conf;
    w.slot = 0;
    w.self = &rt.shm->workers[0];
    w.base = event_base_new();
    CHECK(w.base);
    w.max_active = 8;
    snprintf(w.id_prefix, sizeof w.id_prefix, "fuzz");
    CHECK(bb_router_init(&w) == 0 && bb_endpoints_init(&w) == 0 && bb_auth_init(&w) == 0 &&
          bb_obs_init(&w) == 0);
    return 0;
}

/* Shared state one input leaves behind must not steer the next: breakers would open after a
 * few failed attempts and stop every later request before its upstream request is built. */
static void reset_shared_state(void)
{
    uint32_t n = atomic_load(&rt.shm->n_cells);
    for (uint32_t i = 0; i < n && i < BB_SHM_MAX_CELLS; i++) {
        struct bb_shm_cell *c = &rt.shm->cells[i];
        size_t off = offsetof(struct bb_shm_cell, inflight);
        memset((char *)c + off, 0, sizeof *c - off);
        atomic_store(&c->inflight, 0);
    }
    struct bb_usage_rec recs[64];
    while (bb_ring_pop(&rt.shm->ring, recs, 64, bb_now_ms()) > 0)
        ;
}

/* ---- the oracle on what the client gets ---- */

/* The names a response head may carry (busbar's own and the relayed ones). */
static const char *const names[] = {"x-request-id",
                                    "content-type",
                                    "content-length",
                                    "transfer-encoding",
                                    "connection",
                                    "retry-after",
                                    "allow",
                                    "x-amzn-errortype",
                                    "x-busbar-lane",
                                    "x-busbar-attempts",
                                    "x-busbar-dropped-fields",
                                    "x-busbar-overhead-us",
                                    "x-busbar-route-policy",
                                    "x-busbar-route-target"};

static bool known_name(const char *n, size_t len)
{
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (bb_http_ieq(n, len, names[k]))
            return true;
    return false;
}

/* HTTP/2: well-formed frames; every header block decodes; names lower case and known. */
static void check_h2_response(const uint8_t *out, size_t n)
{
    nghttp2_hd_inflater *inf;
    CHECK(nghttp2_hd_inflate_new(&inf) == 0);
    size_t off = 0;
    while (n - off >= 9) {
        size_t len = (size_t)out[off] << 16 | (size_t)out[off + 1] << 8 | out[off + 2];
        uint8_t type = out[off + 3], flags = out[off + 4];
        if (n - off - 9 < len)
            break; /* cut short by the end of the capture */
        CHECK(len <= 16384);
        const uint8_t *p = out + off + 9;
        size_t pl = len;
        if (type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION) {
            if (type == NGHTTP2_HEADERS && (flags & NGHTTP2_FLAG_PADDED)) {
                CHECK(pl >= 1 && p[0] < pl);
                pl -= 1u + p[0];
                p++;
            }
            if (type == NGHTTP2_HEADERS && (flags & NGHTTP2_FLAG_PRIORITY)) {
                CHECK(pl >= 5);
                p += 5;
                pl -= 5;
            }
            for (;;) {
                nghttp2_nv nv;
                int fl = 0;
                bool final = flags & NGHTTP2_FLAG_END_HEADERS;
                ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &fl, p, pl, final);
                CHECK(r >= 0);
                p += r;
                pl -= (size_t)r;
                if (fl & NGHTTP2_HD_INFLATE_EMIT) {
                    const char *nm = (const char *)nv.name;
                    for (size_t i = 0; i < nv.namelen; i++)
                        CHECK(!(nm[i] >= 'A' && nm[i] <= 'Z'));
                    CHECK((nv.namelen == 7 && memcmp(nm, ":status", 7) == 0) ||
                          known_name(nm, nv.namelen));
                    CHECK(bb_http_field_value_ok((const char *)nv.value, nv.valuelen));
                }
                if (fl & NGHTTP2_HD_INFLATE_FINAL) {
                    nghttp2_hd_inflate_end_headers(inf);
                    break;
                }
                if (pl == 0 && !(fl & NGHTTP2_HD_INFLATE_EMIT))
                    break;
            }
        }
        off += 9 + len;
    }
    nghttp2_hd_inflate_del(inf);
}

static void check_response(const char *out, size_t n)
{
    if (n == 0)
        return;
    BB_HTTP_HEAD(h);
    int r = bb_http_parse_response(out, n, &h);
    if (r == 0)
        return; /* cut short by the connection's end */
    CHECK(r > 0);
    CHECK(h.status >= 100 && h.status < 600);
    CHECK(h.status < 500 || h.status == 502 || h.status == 503 || h.status == 504 ||
          h.status == 505 || h.status == 501 || h.status == 500);
    /* the names busbar writes: a client or provider byte that started a line of its own
     * (response splitting) shows up as any other name */
    for (size_t i = 0; i < h.n_headers; i++) {
        CHECK(bb_http_field_value_ok(h.headers[i].value, h.headers[i].value_len));
        CHECK(known_name(h.headers[i].name, h.headers[i].name_len));
    }
    CHECK(!(h.chunked && h.content_length >= 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    reset_shared_state();
    bb_http_accept(&w, sv[0], NULL, 0);
    size_t off = 0, got = 0;
    static char out[1 << 16];
    bool shut = false;
    int idle = 0; /* iterations after the input was sent in which nothing came back */
    for (int iter = 0; iter < 100000 && w.n_conns > 0 && idle < 20; iter++) {
        size_t before = got;
        if (off < size) {
            ssize_t k = write(sv[1], data + off, size - off);
            if (k > 0)
                off += (size_t)k;
        } else if (!shut) {
            shutdown(sv[1], SHUT_WR); /* EOF: the connection ends once it is answered */
            shut = true;
        }
        event_base_loop(w.base, EVLOOP_NONBLOCK);
        for (;;) {
            char tmp[8192];
            ssize_t k = read(sv[1], tmp, sizeof tmp);
            if (k <= 0)
                break;
            size_t room = sizeof out - got;
            memcpy(out + got, tmp, (size_t)k < room ? (size_t)k : room);
            got += (size_t)k < room ? (size_t)k : room;
        }
        idle = shut && got == before ? idle + 1 : 0;
    }
    if (getenv("FUZZ_REQUEST_DEBUG"))
        fprintf(stderr, "fuzz_request: %u upstream request(s), %zu bytes answered:\n%.*s\n",
                upstream_requests, got, (int)(got < 2000 ? got : 2000), out);
    upstream_requests = 0;
    static const char preface[] = NGHTTP2_CLIENT_MAGIC;
    if (size >= sizeof preface - 1 && memcmp(data, preface, sizeof preface - 1) == 0)
        check_h2_response((const uint8_t *)out, got); /* the server's frames (after no preface) */
    else
        check_response(out, got);
    bb_http_close_all(&w); /* a connection still waiting (a timer) ends here */
    close(sv[1]);
    /* drain the events the closed connections left (their timers were freed with them) */
    event_base_loop(w.base, EVLOOP_NONBLOCK);
    CHECK(w.n_conns == 0 && w.n_active == 0);
    return 0;
}
