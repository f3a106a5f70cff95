/*
 * test_params: the table-driven scalar parameters (worker/params): reading (aliases, nested
 * members, ranges, located errors), the known-field list, writing (clamps, hooks, drops in the
 * table's order) and the docs: each docs/protocols/<name>.md holds, between
 * "<!-- params:begin -->" and "<!-- params:end -->", exactly the table bb_params_doc renders
 * from that module's rows. BB_UPDATE_DOCS=1 rewrites those sections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FIX "../../docs/protocols/"
#include "proto_test_common.h"
#include "worker/params.h"
#include "worker/proto.h"
#include "worker/rd.h"

static const struct bb_param rows[] = {
    {"max", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 1, 100, ""},
    {"old_max", BB_IRP_MAX_TOKENS, BB_PF_IN, 0, 0, "older name"},
    {"cfg.t", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 1, ""},
    {"stop", BB_IRP_STOP, BB_PF_IN | BB_PF_OUT | BB_PF_ONE | BB_PF_CLAMP, 0, 2, ""},
    {"seed", BB_IRP_SEED, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {NULL, BB_IRP_TOP_K, 0, 0, 0, "no such field"},
};
#define N_ROWS (sizeof rows / sizeof rows[0])

/* Read body with the rows; returns the reader's result, the error in err. */
static int read_body(const char *body, struct bb_ir_request *req, struct bb_arena *a,
                     struct bb_err *err)
{
    memset(req, 0, sizeof *req);
    struct bb_rd r;
    bb_rd_init(&r, a, req, err);
    json_object *o = parse_str(body);
    int rc = bb_params_read(&r, o, rows, N_ROWS);
    json_object_put(o);
    return rc;
}

static void test_read(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_err err = {{0}};
    struct bb_ir_request q;

    assert_int_equal(
        read_body("{\"max\":50.0,\"cfg\":{\"t\":0.5},\"stop\":\"x\",\"seed\":-3}", &q, &a, &err),
        0);
    assert_true(q.has_max_tokens);
    assert_int_equal(q.max_tokens, 50); /* 50.0 is an integer */
    assert_true(q.has_temperature);
    assert_true(q.temperature == 0.5);
    assert_int_equal(q.n_stop, 1);
    assert_true(str_is(&q.stop[0], "x"));
    assert_true(q.has_seed);
    assert_int_equal(q.seed, -3);
    assert_false(q.has_top_k);

    /* the older name when the current one is absent; the current one wins */
    assert_int_equal(read_body("{\"old_max\":7}", &q, &a, &err), 0);
    assert_int_equal(q.max_tokens, 7);
    assert_int_equal(read_body("{\"old_max\":7,\"max\":9}", &q, &a, &err), 0);
    assert_int_equal(q.max_tokens, 9);
    /* a clamped row checks the type only when reading; a string array of any length */
    assert_int_equal(read_body("{\"cfg\":{\"t\":7},\"stop\":[\"a\",\"b\",\"c\"]}", &q, &a, &err),
                     0);
    assert_true(q.temperature == 7);
    assert_int_equal(q.n_stop, 3);

    static const struct {
        const char *body, *msg;
    } bad[] = {
        {"{\"max\":1.5}", "max: expected an integer"},
        {"{\"max\":101}", "max: out of range"},
        {"{\"max\":0}", "max: out of range"},
        {"{\"old_max\":-1}", "old_max: out of range"},
        {"{\"cfg\":{\"t\":\"hot\"}}", "cfg.t: expected a number"},
        {"{\"cfg\":[1]}", "cfg: expected an object"},
        {"{\"stop\":[\"a\",2]}", "stop[1]: expected a string"},
        {"{\"stop\":3}", "stop: expected a string or an array of strings"},
        {"{\"seed\":1e300}", "seed: out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = '\0';
        if (read_body(bad[i].body, &q, &a, &err) != -1)
            fail_msg("%s: accepted", bad[i].body);
        if (strcmp(err.msg, bad[i].msg) != 0)
            fail_msg("%s: \"%s\", want \"%s\"", bad[i].body, err.msg, bad[i].msg);
    }
    bb_arena_free(&a);
}

static void test_known(void **state)
{
    (void)state;
    assert_true(bb_params_known(rows, N_ROWS, "max"));
    assert_true(bb_params_known(rows, N_ROWS, "old_max"));
    assert_true(bb_params_known(rows, N_ROWS, "cfg"));
    assert_false(bb_params_known(rows, N_ROWS, "cf"));
    assert_false(bb_params_known(rows, N_ROWS, "top_k")); /* a drop row is not read */
    assert_true(bb_params_known_in(rows, N_ROWS, "cfg", "t"));
    assert_false(bb_params_known_in(rows, N_ROWS, "cfg", "u"));
    assert_false(bb_params_known_in(rows, N_ROWS, "max", "t"));
}

static bool veto_seed(void *arg, const struct bb_param *p, struct bb_param_value *v)
{
    (void)v;
    if (p->field != BB_IRP_SEED)
        return true;
    ++*(int *)arg;
    return false;
}

static void test_write(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    static struct bb_ir_str stop[] = {{(char *)"a", 1}, {(char *)"b", 1}, {(char *)"c", 1}};
    struct bb_ir_request ir = {.has_max_tokens = true,
                               .max_tokens = 50,
                               .has_temperature = true,
                               .temperature = 1.5,
                               .stop = stop,
                               .n_stop = 3,
                               .has_seed = true,
                               .seed = 5,
                               .has_top_k = true,
                               .top_k = 40,
                               .n_choices = 2};
    struct bb_dropped d = {0};
    struct bb_egress_ctx ctx = {.dropped = &d};
    json_object *o = json_object_new_object();
    bb_params_write(o, rows, N_ROWS, &ir, &a, &ctx, NULL, NULL);
    /* temperature clamped to 1 (a number keeps its fraction), stop kept to 2 */
    assert_json_eq("written", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                   "{\"max\":50,\"cfg\":{\"t\":1.0},\"stop\":[\"a\",\"b\"],\"seed\":5}");
    json_object_put(o);
    /* drops in the table's order, then what the table does not name (n above 1) */
    char text[128];
    bb_proto_dropped_text(&d, text, sizeof text);
    assert_string_equal(text, "stop,top_k,n");

    /* a hook vetoes a value; n = 1 is the default, not a loss */
    struct bb_dropped d2 = {0};
    ctx.dropped = &d2;
    ir.n_choices = 1;
    ir.n_stop = 0;
    int vetoed = 0;
    o = json_object_new_object();
    bb_params_write(o, rows, N_ROWS, &ir, &a, &ctx, veto_seed, &vetoed);
    assert_int_equal(vetoed, 1);
    assert_json_eq("hooked", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                   "{\"max\":50,\"cfg\":{\"t\":1.0}}");
    json_object_put(o);
    bb_proto_dropped_text(&d2, text, sizeof text);
    assert_string_equal(text, "top_k");
    bb_arena_free(&a);
}

/* ---- the docs tables ---- */

#define BEGIN "<!-- params:begin -->\n"
#define END "<!-- params:end -->\n"

static void test_docs(void **state)
{
    (void)state;
    const char *u = getenv("BB_UPDATE_DOCS");
    bool update = u && *u && strcmp(u, "0") != 0;
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        assert_non_null(o->name);
        assert_non_null(o->params);
        char name[64], path[256], table[16384];
        snprintf(name, sizeof name, "%s.md", o->name);
        snprintf(path, sizeof path, FIX "%s", name);
        size_t tn = bb_params_doc(o->params, o->n_params, table, sizeof table);
        assert_true(tn < sizeof table - 1);
        size_t n;
        char *doc = slurp(name, &n);
        char *b = strstr(doc, BEGIN), *e = b ? strstr(b, END) : NULL;
        if (!b || !e)
            fail_msg("%s: no \"<!-- params:begin -->\" ... \"<!-- params:end -->\" section", path);
        b += strlen(BEGIN);
        if ((size_t)(e - b) == tn && memcmp(b, table, tn) == 0) {
            free(doc);
            continue;
        }
        if (!update)
            fail_msg("%s: the parameter table differs from worker/proto_%s.c's rows; "
                     "BB_UPDATE_DOCS=1 rewrites it. It should read:\n%s",
                     path, o->name, table);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fwrite(doc, 1, (size_t)(b - doc), f);
        fwrite(table, 1, tn, f);
        fwrite(e, 1, n - (size_t)(e - doc), f);
        fclose(f);
        free(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_known),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
