/*
 * reload: build a configuration generation (conf + listeners + SSL_CTXs + shm cells) and swap
 * it in (SPEC §2.5). Master process only; runs inside the supervisor loop, never in a signal
 * handler. A failed reload changes nothing: the old generation keeps serving.
 */
#ifndef BB_MASTER_RELOAD_H
#define BB_MASTER_RELOAD_H

#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "master/master.h"

/* A list of owned strings (error lines for the log and the admin reply). */
struct bb_strv {
    char **v;
    size_t n;
};

void bb_strv_pushf(struct bb_strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append each error as "file:line:col: message". */
void bb_strv_push_conf_errors(struct bb_strv *s, const struct bb_conf_errors *errs);
void bb_strv_free(struct bb_strv *s);

/* mkdir -p conf->state_dir (mode 0750) and the admin socket's directory. -1 with err. */
int bb_reload_prepare_dirs(const struct bb_conf *conf, struct bb_err *err);
/* Build generation `generation` around conf, which it takes over (freed on failure too):
 * acquires listeners, builds the SSL_CTXs, interns the shm cells of every lane and pool
 * member. The result is not linked into m->gens. NULL with err on failure. */
struct bb_gen *bb_gen_build(struct bb_master *m, struct bb_conf *conf, uint32_t generation,
                            struct bb_err *err);
/* Release everything g holds (listener references, SSL_CTXs, conf) and unlink it. */
void bb_gen_free(struct bb_master *m, struct bb_gen *g);
/* Free every non-current generation no worker slot refers to any more. */
void bb_gen_collect(struct bb_master *m);
/* Reload from m->config_path/providers_path. 0 on success (*generation = the new one, its
 * workers forked, old generations scheduled to drain); -1 with every error in errors. */
int bb_reload(struct bb_master *m, uint64_t now, struct bb_strv *errors, uint32_t *generation);

#endif
