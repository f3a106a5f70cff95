/*
 * test_redis: the asynchronous Redis client (common/redis.c) against a scripted fake server on
 * the same libevent loop: the handshake (AUTH user password, SELECT, SCRIPT LOAD, PING),
 * pipelined answers in order, EVALSHA with a NOSCRIPT reload, a lost connection (pending
 * callbacks answered NULL, reconnection), a stalled server dropped after stall_ms, and a
 * refused AUTH. (The real redis-server is exercised by tests/integration/test_cluster.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>

#include "common/log.h"
#include "common/redis.h"
#include "common/shm.h"

/* ---- the fake server --------------------------------------------------------------------- */

struct fake {
    struct event_base *base;
    struct evconnlistener *lst;
    uint16_t port;
    struct bufferevent *conn; /* the current client connection */
    redisReader *rd;
    int accepted;
    bool scripts_known; /* SCRIPT LOAD seen since the last flush */
    bool silent;        /* stop answering */
    bool wrong_password;
    bool closing;
    char last_auth[128];
    char log[4096]; /* commands seen, space separated names */
};

static void reply(struct fake *f, const char *s)
{
    bufferevent_write(f->conn, s, strlen(s));
}

static void handle(struct fake *f, redisReply *cmd)
{
    const char *name = cmd->element[0]->str;
    if (strlen(f->log) + strlen(name) + 2 < sizeof f->log) {
        strcat(f->log, name);
        strcat(f->log, " ");
    }
    if (f->silent)
        return;
    char buf[256];
    if (!strcmp(name, "AUTH")) {
        snprintf(f->last_auth, sizeof f->last_auth, "%s:%s", cmd->element[1]->str,
                 cmd->elements > 2 ? cmd->element[2]->str : "");
        reply(f, f->wrong_password ? "-WRONGPASS invalid username-password pair\r\n" : "+OK\r\n");
    } else if (!strcmp(name, "SELECT") || !strcmp(name, "PING")) {
        reply(f, !strcmp(name, "PING") ? "+PONG\r\n" : "+OK\r\n");
    } else if (!strcmp(name, "SCRIPT")) {
        f->scripts_known = true;
        reply(f, "$40\r\n0123456789012345678901234567890123456789\r\n");
    } else if (!strcmp(name, "EVALSHA")) {
        reply(f, f->scripts_known ? ":42\r\n" : "-NOSCRIPT No matching script.\r\n");
    } else if (!strcmp(name, "ECHO")) {
        snprintf(buf, sizeof buf, "$%zu\r\n%s\r\n", strlen(cmd->element[1]->str),
                 cmd->element[1]->str);
        reply(f, buf);
    } else if (!strcmp(name, "CLOSE")) {
        f->closing = true; /* once what was answered before is written */
        bufferevent_disable(f->conn, EV_READ);
    } else {
        reply(f, "-ERR unknown\r\n");
    }
}

static void fake_read(struct bufferevent *bev, void *arg)
{
    struct fake *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    redisReaderFeed(f->rd, (const char *)evbuffer_pullup(in, -1), n);
    evbuffer_drain(in, n);
    void *r;
    while (f->conn && !f->closing && redisReaderGetReply(f->rd, &r) == REDIS_OK && r) {
        handle(f, r);
        freeReplyObject(r);
    }
}

static void fake_write(struct bufferevent *bev, void *arg)
{
    struct fake *f = arg;
    if (f->closing && f->conn == bev) {
        bufferevent_free(bev);
        f->conn = NULL;
        f->closing = false;
    }
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    struct fake *f = arg;
    (void)what;
    if (f->conn == bev) {
        bufferevent_free(bev);
        f->conn = NULL;
    }
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                        void *arg)
{
    (void)l;
    (void)sa;
    (void)len;
    struct fake *f = arg;
    if (f->conn)
        bufferevent_free(f->conn);
    f->conn = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(f->conn, fake_read, fake_write, fake_event, f);
    bufferevent_enable(f->conn, EV_READ | EV_WRITE);
    if (f->rd)
        redisReaderFree(f->rd);
    f->rd = redisReaderCreate();
    f->accepted++;
}

static struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    f->lst = evconnlistener_new_bind(f->base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE, 16,
                                     (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(f->lst);
    struct sockaddr_in got;
    socklen_t gl = sizeof got;
    getsockname(evconnlistener_get_fd(f->lst), (struct sockaddr *)&got, &gl);
    f->port = ntohs(got.sin_port);
    return f;
}

static void fake_free(struct fake *f)
{
    if (f->conn)
        bufferevent_free(f->conn);
    if (f->rd)
        redisReaderFree(f->rd);
    evconnlistener_free(f->lst);
    event_base_free(f->base);
    free(f);
}

/* Run the loop until *flag or ms pass. */
static void run_until(struct fake *f, const bool *flag, int ms)
{
    uint64_t until = bb_now_ms() + (uint64_t)ms;
    while (!*flag && bb_now_ms() < until) {
        struct timeval tv = {0, 2000};
        event_base_loopexit(f->base, &tv);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

/* ---- the client side --------------------------------------------------------------------- */

struct state {
    int ups, downs;
    bool up, down;
};

static void on_state(struct bb_redis *r, bool up, const char *why, void *arg)
{
    (void)r;
    (void)why;
    struct state *s = arg;
    if (up) {
        s->ups++;
        s->up = true;
    } else {
        s->downs++;
        s->down = true;
    }
}

struct answers {
    int n, nulls;
    char got[64][32];
    bool done;
    int want;
};

static void collect(struct bb_redis *r, struct redisReply *rep, void *arg)
{
    (void)r;
    struct answers *a = arg;
    if (!rep)
        a->nulls++;
    else if (rep->type == REDIS_REPLY_STRING)
        snprintf(a->got[a->n % 64], 32, "%s", rep->str);
    else if (rep->type == REDIS_REPLY_INTEGER)
        snprintf(a->got[a->n % 64], 32, "%lld", rep->integer);
    else
        snprintf(a->got[a->n % 64], 32, "type %d", rep->type);
    a->n++;
    a->done = a->n >= a->want;
}

static struct bb_redis *client(struct fake *f, struct state *s, const char *user,
                               const char *password, uint32_t stall_ms)
{
    struct bb_redis_opts o = {.host = "127.0.0.1",
                              .port = f->port,
                              .db = 3,
                              .user = user,
                              .password = password,
                              .connect_timeout_ms = 1000,
                              .stall_ms = stall_ms,
                              .name = "test",
                              .on_state = on_state,
                              .state_arg = s};
    struct bb_redis *r = bb_redis_new(f->base, NULL, &o);
    assert_non_null(r);
    return r;
}

static void test_handshake_and_pipelining(void **unused)
{
    (void)unused;
    struct fake *f = fake_new();
    struct state s = {0};
    struct bb_redis *r = client(f, &s, "busbar", "pw", 2000);
    assert_int_equal(bb_redis_script(r, "return 42"), 0);
    const char *argv[] = {"ECHO", "x"};
    assert_int_equal(bb_redis_command(r, collect, NULL, 2, argv, NULL), -1); /* not yet */
    run_until(f, &s.up, 2000);
    assert_true(bb_redis_ready(r));
    assert_string_equal(f->last_auth, "busbar:pw");
    assert_string_equal(f->log, "AUTH SELECT SCRIPT PING ");
    /* 50 commands written at once, answered in order */
    struct answers a = {.want = 50};
    char words[50][8];
    for (int i = 0; i < 50; i++) {
        snprintf(words[i], sizeof words[i], "w%d", i);
        const char *av[] = {"ECHO", words[i]};
        assert_int_equal(bb_redis_command(r, collect, &a, 2, av, NULL), 0);
    }
    assert_int_equal(bb_redis_pending(r), 50);
    run_until(f, &a.done, 2000);
    assert_int_equal(a.n, 50);
    for (int i = 0; i < 50; i++)
        assert_string_equal(a.got[i], words[i]);
    assert_int_equal(bb_redis_pending(r), 0);
    bb_redis_free(r);
    fake_free(f);
}

static void test_noscript_reloads_and_resends(void **unused)
{
    (void)unused;
    struct fake *f = fake_new();
    struct state s = {0};
    struct bb_redis *r = client(f, &s, NULL, NULL, 2000);
    int sc = bb_redis_script(r, "return 42");
    run_until(f, &s.up, 2000);
    f->scripts_known = false; /* SCRIPT FLUSH on the server */
    f->log[0] = '\0';
    struct answers a = {.want = 1};
    const char *argv[] = {"x"};
    assert_int_equal(bb_redis_eval(r, sc, collect, &a, 1, argv, NULL), 0);
    run_until(f, &a.done, 2000);
    assert_int_equal(a.n, 1); /* the callback saw the answer of the resend only */
    assert_string_equal(a.got[0], "42");
    assert_string_equal(f->log, "EVALSHA SCRIPT EVALSHA ");
    bb_redis_free(r);
    fake_free(f);
}

static void test_lost_connection_answers_null_and_reconnects(void **unused)
{
    (void)unused;
    struct fake *f = fake_new();
    struct state s = {0};
    struct bb_redis *r = client(f, &s, NULL, NULL, 2000);
    run_until(f, &s.up, 2000);
    struct answers a = {.want = 3};
    const char *e1[] = {"ECHO", "one"}, *cl[] = {"CLOSE"}, *e2[] = {"ECHO", "two"};
    bb_redis_command(r, collect, &a, 2, e1, NULL);
    bb_redis_command(r, collect, &a, 1, cl, NULL);
    bb_redis_command(r, collect, &a, 2, e2, NULL);
    run_until(f, &a.done, 2000);
    assert_int_equal(a.n, 3);
    assert_string_equal(a.got[0], "one");
    assert_int_equal(a.nulls, 2); /* CLOSE and what followed it: NULL, once each */
    assert_true(s.down);
    assert_false(bb_redis_ready(r));
    const char *argv[] = {"ECHO", "x"};
    assert_int_equal(bb_redis_command(r, collect, NULL, 2, argv, NULL), -1);
    s.up = false;
    run_until(f, &s.up, 3000); /* back-off, then a new connection */
    assert_true(bb_redis_ready(r));
    assert_int_equal(f->accepted, 2);
    assert_int_equal(s.ups, 2);
    bb_redis_free(r);
    fake_free(f);
}

static void test_stalled_server_is_dropped(void **unused)
{
    (void)unused;
    struct fake *f = fake_new();
    struct state s = {0};
    struct bb_redis *r = client(f, &s, NULL, NULL, 200);
    run_until(f, &s.up, 2000);
    f->silent = true;
    struct answers a = {.want = 1};
    const char *argv[] = {"ECHO", "x"};
    uint64_t t0 = bb_now_ms();
    bb_redis_command(r, collect, &a, 2, argv, NULL);
    run_until(f, &a.done, 2000);
    uint64_t dt = bb_now_ms() - t0;
    assert_int_equal(a.nulls, 1);
    assert_true(dt >= 200 && dt < 1000);
    assert_true(s.down);
    bb_redis_free(r);
    fake_free(f);
}

static void test_refused_auth_never_ready(void **unused)
{
    (void)unused;
    struct fake *f = fake_new();
    f->wrong_password = true;
    struct state s = {0};
    struct bb_redis *r = client(f, &s, "busbar", "wrong", 2000);
    bool never = false;
    run_until(f, &never, 400);
    assert_false(bb_redis_ready(r));
    assert_int_equal(s.ups, 0);
    assert_true(f->accepted >= 2); /* it keeps trying, with back-off */
    assert_true(f->accepted < 6);
    bb_redis_free(r);
    fake_free(f);
}

int main(void)
{
    bb_log_set_level(BB_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_pipelining),
        cmocka_unit_test(test_noscript_reloads_and_resends),
        cmocka_unit_test(test_lost_connection_answers_null_and_reconnects),
        cmocka_unit_test(test_stalled_server_is_dropped),
        cmocka_unit_test(test_refused_auth_never_ready),
    };
    return cmocka_run_group_tests_name("redis", tests, NULL, NULL);
}
