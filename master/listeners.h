/*
 * listeners: the master's table of listening sockets. Each address is bound ONCE for the life
 * of the master and shared by every generation that lists it, so a reload hands the very same
 * accept queue to the new workers (zero-drop reload). Master process only; no locking.
 */
#ifndef BB_MASTER_LISTENERS_H
#define BB_MASTER_LISTENERS_H

#include "common/config.h"
#include "common/err.h"
#include "master/master.h"

/* Return the listening fd for l, binding it when no generation listens there yet, and take a
 * reference. *key_out receives the table key (malloc'd, caller keeps it for release).
 * -1 with err on resolve/bind failure. */
int bb_listeners_acquire(struct bb_master *m, const struct bb_listen *l, char **key_out,
                         struct bb_err *err);
/* Drop one reference; the socket is closed when the last generation using it is gone. */
void bb_listeners_release(struct bb_master *m, const char *key);
/* In a worker after fork: close every listening socket its runtime does not use, so a removed
 * address really stops accepting once the old generation is gone. */
void bb_listeners_close_others(struct bb_master *m, const struct bb_runtime *rt);

#endif
