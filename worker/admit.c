/*
 * admit: the entry of the LLM endpoints. One validating scan of the client's body finds the
 * model, the stream flag, the output cap and what session affinity hashes, where the ingress
 * protocol's module says they are; the model resolves
 * to a pool or a lane; governance admits the request (worker/meter.c); then the attempt loop
 * starts (worker/attempt.c). Worker process, single-threaded.
 */
#include "worker/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/jscan.h"
#include "common/log.h"
#include "worker/attempt.h"
#include "worker/meter.h"
#include "worker/params.h"
#include "worker/proto.h"
#include "worker/policy.h"
#include "worker/worker.h"

#define JSON_DEPTH_MAX 128

/* bb_meter_admit_async's answer: -1 = refused, answered and finished already. Then the
 * pool's routing policy, once, which starts the attempt loop (worker/policy.h). */
static void admitted(struct bb_request *req, int rc)
{
    if (rc == 0)
        bb_policy_route(req);
}

/* The body members admission reads with one scan, as the ingress protocol names them (its
 * ops: the stream flag, the stream-usage ask, the affinity members, and the rows of its
 * parameter table that hold the output cap and the choice count). Nested rows ("a.b") read
 * member b of the top-level object a. */
#define ADMIT_FIELDS_MAX 24

enum admit_role { A_MODEL, A_STREAM, A_USAGE, A_AFFINITY, A_CAP, A_CHOICES };

struct admit_scan {
    struct bb_jscan_field f[ADMIT_FIELDS_MAX];
    char keys[ADMIT_FIELDS_MAX][64]; /* "a" of a nested "a.b" */
    size_t n;
    struct {
        enum admit_role role;
        size_t field;    /* index into f */
        const char *sub; /* member of that object, NULL: the field itself */
    } want[ADMIT_FIELDS_MAX];
    size_t n_want;
};

/* Want the member `path` ("a" or "a.b") in role: its top-level field shared with others. */
static void admit_want(struct admit_scan *s, enum admit_role role, const char *path)
{
    if (!path || s->n_want == ADMIT_FIELDS_MAX)
        return;
    const char *dot = strchr(path, '.');
    size_t kl = dot ? (size_t)(dot - path) : strlen(path), i;
    for (i = 0; i < s->n; i++)
        if (strlen(s->f[i].key) == kl && memcmp(s->f[i].key, path, kl) == 0)
            break;
    if (i == s->n) {
        if (s->n == ADMIT_FIELDS_MAX)
            return;
        if (dot) { /* the top-level key needs its own string */
            snprintf(s->keys[i], sizeof s->keys[i], "%.*s", (int)kl, path);
            s->f[i].key = s->keys[i];
        } else {
            s->f[i].key = path;
        }
        s->n++;
    }
    s->want[s->n_want].role = role;
    s->want[s->n_want].field = i;
    s->want[s->n_want].sub = dot ? dot + 1 : NULL;
    s->n_want++;
}

static void admit_scan_init(struct admit_scan *s, const struct bb_proto_ops *ops)
{
    memset(s, 0, sizeof *s);
    admit_want(s, A_MODEL, "model");
    admit_want(s, A_STREAM, ops->stream_member);
    admit_want(s, A_USAGE, ops->stream_usage.member);
    for (const char *const *m = ops->affinity_members; m && *m; m++)
        admit_want(s, A_AFFINITY, *m);
    for (size_t i = 0; i < ops->n_params; i++) {
        const struct bb_param *p = &ops->params[i];
        if ((p->flags & BB_PF_IN) && p->field == BB_IRP_MAX_TOKENS)
            admit_want(s, A_CAP, p->wire);
        else if ((p->flags & BB_PF_IN) && p->field == BB_IRP_N)
            admit_want(s, A_CHOICES, p->wire);
    }
}

/* The field a role's first want names (NULL when the body has none). */
static const struct bb_jscan_field *admit_field(const struct admit_scan *s, enum admit_role role)
{
    for (size_t i = 0; i < s->n_want; i++)
        if (s->want[i].role == role && s->f[s->want[i].field].type != BB_JNONE)
            return &s->f[s->want[i].field];
    return NULL;
}

/* A non-negative JSON number, rounded up and saturating (a huge cap must reserve a huge worst
 * case, never fall back to the default); 0 when it is negative or not a number. */
static uint64_t jnum(const char *p, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return n ? UINT64_MAX / 4 : 0; /* 64+ characters: only a huge number is that long */
    memcpy(buf, p, n);
    buf[n] = '\0';
    double v = strtod(buf, NULL);
    if (!(v > 0))
        return 0;
    if (v >= 1e15)
        return UINT64_MAX / 4;
    uint64_t u = (uint64_t)v;
    return (double)u < v ? u + 1 : u;
}

/* Member `key` of the object value f (a number), 0 when absent. */
static uint64_t sub_num(const char *body, const struct bb_jscan_field *f, const char *key)
{
    if (f->type != BB_JOBJECT)
        return 0;
    struct bb_jscan_field s = {.key = key};
    struct bb_err err;
    if (bb_jscan_object(body + f->off, f->len, &s, 1, JSON_DEPTH_MAX, &err) < 0 ||
        s.type != BB_JNUMBER)
        return 0;
    return jnum(body + f->off + s.off, s.len);
}

/* The largest value the wants of a role give (0: none). */
static uint64_t admit_max(const char *body, const struct admit_scan *s, enum admit_role role)
{
    uint64_t m = 0;
    for (size_t i = 0; i < s->n_want; i++) {
        if (s->want[i].role != role)
            continue;
        const struct bb_jscan_field *f = &s->f[s->want[i].field];
        uint64_t v = s->want[i].sub          ? sub_num(body, f, s->want[i].sub)
                     : f->type == BB_JNUMBER ? jnum(body + f->off, f->len)
                                             : 0;
        m = v > m ? v : m;
    }
    return m;
}

/* The most output tokens the client allows (all choices together); 0 = not set. */
static uint64_t max_output(const char *body, const struct admit_scan *s)
{
    uint64_t m = admit_max(body, s, A_CAP), n = admit_max(body, s, A_CHOICES);
    if (m && n > 1)
        m = n > UINT32_MAX || m > UINT64_MAX / n ? UINT64_MAX / 2 : m * n;
    return m;
}

/* A model or pool name as every reader will see it: no NUL or other control byte. */
static bool name_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* Session affinity (SPEC §5.3): the affinity header, else the first of the ingress
 * protocol's affinity members the body has (the system prompt, else the start of the
 * conversation, which holds it in OpenAI-style bodies). 0 = no session. */
static uint64_t affinity_hash(struct bb_request *req, const struct admit_scan *s)
{
    const struct bb_pool *pl = &req->w->conf->pools[req->pool];
    const struct bb_http_header *h = bb_http_find(&req->head, pl->affinity_header);
    if (h && h->value_len)
        return fnv1a64(h->value, h->value_len);
    const struct bb_jscan_field *f = admit_field(s, A_AFFINITY);
    return f ? fnv1a64(req->body + f->off, f->len < 256 ? f->len : 256) : 0;
}

void bb_proxy_handle(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    const struct bb_proto_ops *iops = bb_proto_get(req->ingress);
    struct admit_scan scan;
    admit_scan_init(&scan, iops);
    struct bb_err err;
    /* Duplicate member names are refused at the top level and in the objects admission reads
     * from: a provider that keeps the first duplicate must not run what busbar did not admit. */
    int bad = bb_jscan_request(req->body ? req->body : "", req->body_len, scan.f, scan.n,
                               JSON_DEPTH_MAX, &err);
    const char *inner = NULL;
    for (size_t i = 0; bad == 0 && i < scan.n_want; i++) {
        const struct bb_jscan_field *o = &scan.f[scan.want[i].field];
        if (o->type != BB_JOBJECT || (!scan.want[i].sub && scan.want[i].role != A_USAGE))
            continue;
        inner = o->key;
        bad = bb_jscan_request(req->body + o->off, o->len, NULL, 0, JSON_DEPTH_MAX, &err);
    }
    if (bad < 0) {
        char msg[600];
        if (inner)
            snprintf(msg, sizeof msg, "'%s' in the request body: %s", inner, err.msg);
        else
            snprintf(msg, sizeof msg, "request body is not a valid JSON object: %s", err.msg);
        bb_request_fail(req, BB_ERR_INVALID_JSON, msg);
        return;
    }
    struct bb_route_state *rs = bb_arena_calloc(&req->arena, sizeof *rs);
    if (!rs) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    req->route = rs;
    const struct bb_jscan_field *fm = &scan.f[0]; /* "model" */
    if (fm->type == BB_JSTRING) {
        char *bm = bb_arena_alloc(&req->arena, fm->len + 1);
        long bl = bm ? bb_jscan_unquote(req->body + fm->off, fm->len, bm, fm->len + 1) : -1;
        if (bl > 0 && !name_ok(bm, (size_t)bl)) {
            /* "p\u0000zzz" would be routed as "p" and forwarded as the whole string */
            bb_request_fail(req, BB_ERR_MISSING_MODEL, "'model' contains a control character");
            return;
        }
        if (bl > 0) {
            rs->body_model = true;
            rs->model_off = fm->off;
            rs->model_len = fm->len;
            rs->model = bm;
        }
    } else if (fm->type != BB_JNONE && !req->model_from_path) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL, "'model' must be a string");
        return;
    }
    if (req->model_from_path) /* the URL wins (SPEC §3.1) */
        rs->model = req->model_from_path;
    if (!rs->model) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL,
                        fm->type == BB_JNONE ? "the request has no 'model'"
                                             : "'model' is empty or invalid");
        return;
    }
    const struct bb_jscan_field *st = admit_field(&scan, A_STREAM);
    if (req->path_stream < 0 && st && st->type != BB_JNONE && st->type != BB_JBOOL &&
        st->type != BB_JNULL) {
        /* one type rule for every route: "true" as a string is not true anywhere */
        bb_request_fail(req, BB_ERR_BAD_REQUEST, "'stream' must be a boolean");
        return;
    }
    req->stream =
        req->path_stream >= 0 ? req->path_stream == 1 : st && st->type == BB_JBOOL && st->truthy;
    const struct bb_jscan_field *so = admit_field(&scan, A_USAGE);
    if (so) { /* the client's own ask for usage in its stream */
        struct bb_jscan_field iu = {.key = iops->stream_usage.flag};
        rs->stream_options = so->type == BB_JOBJECT &&
                                     bb_jscan_object(req->body + so->off, so->len, &iu, 1,
                                                     JSON_DEPTH_MAX, &err) == 0 &&
                                     iu.type == BB_JBOOL && iu.truthy
                                 ? 1
                                 : -1;
    }
    rs->ictx.request_id = req->id;
    rs->ictx.model = rs->model;
    rs->ictx.created = (int64_t)time(NULL);
    rs->ictx.route_flags = req->route_flags;
    rs->cont.open_text = -1;

    size_t ml = strlen(rs->model);
    req->pool = bb_conf_find_pool(conf, rs->model, ml);
    if (req->pool >= 0 && conf->pools[req->pool].affinity)
        rs->affinity = affinity_hash(req, &scan);
    size_t n_tried = 1;
    if (req->pool >= 0) {
        n_tried = conf->pools[req->pool].n_members;
        req->t_deadline_ms =
            bb_now_ms() + (uint64_t)conf->pools[req->pool].failover_timeout_secs * 1000u;
    } else {
        req->lane = bb_conf_find_lane(conf, rs->model, ml);
        if (req->lane < 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "The model '%.200s' does not exist", rs->model);
            bb_request_fail(req, BB_ERR_MODEL_NOT_FOUND, msg);
            return;
        }
        req->t_deadline_ms =
            bb_now_ms() + (uint64_t)conf->limits.upstream_request_timeout_secs * 1000u;
    }
    rs->tried = bb_arena_calloc(&req->arena, n_tried * sizeof(bool));
    if (!rs->tried) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    rs->cont.enabled = req->stream && req->pool >= 0 && conf->pools[req->pool].on_cut_continue;
    rs->max_out = max_output(req->body ? req->body : "", &scan);
    /* in cluster mode Redis decides: admitted() may run later (worker/cluster.c) */
    bb_meter_admit_async(req, rs->max_out, admitted);
}
