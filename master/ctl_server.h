/*
 * ctl_server: the admin socket in the master (wire format in common/ctl_proto.h).
 * Master process only, driven by the supervisor's poll loop: the listening socket and every
 * client are non-blocking and each client has a deadline, so a slow or silent client never
 * blocks the master. Commands are dispatched from the BB_CTL_CMD_LIST table.
 */
#ifndef BB_MASTER_CTL_SERVER_H
#define BB_MASTER_CTL_SERVER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "master/master.h"

/* Bind path (stale socket file removed, refused when another master answers there), mode
 * 0600. NULL with err on failure. */
struct bb_ctl_server *bb_ctl_server_open(const char *path, struct bb_err *err);
/* Move the listening socket to a new path (reload changed admin.socket); clients in flight are
 * kept. -1 with err (the old socket stays) on failure. */
int bb_ctl_server_rebind(struct bb_ctl_server *s, const char *path, struct bb_err *err);
/* Close everything and unlink the socket file (master exit). NULL is a no-op. */
void bb_ctl_server_free(struct bb_ctl_server *s);
/* In a worker after fork: close the inherited fds, touch nothing else. */
void bb_ctl_server_child_close(struct bb_ctl_server *s);
/* Fill pfd (at most max entries) with the fds to poll; returns how many. */
size_t bb_ctl_server_pollfds(struct bb_ctl_server *s, struct pollfd *pfd, size_t max);
/* True while a reply is held (a reload waiting for its generation to take over). */
bool bb_ctl_server_busy(const struct bb_ctl_server *s);
/* Handle the poll results returned for the entries bb_ctl_server_pollfds filled, and expire
 * clients past their deadline. */
void bb_ctl_server_process(struct bb_ctl_server *s, struct bb_master *m, const struct pollfd *pfd,
                           size_t n, uint64_t now);

#endif
