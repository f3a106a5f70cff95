/*
 * sockread: see sockread.h.
 */
#include "worker/sockread.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#define READ_MAX (16u << 10) /* one recv; what libevent reads per call is 4 KiB */

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct bufferevent *bev = arg;
    char buf[READ_MAX];
    ssize_t n;
    do
        n = recv(fd, buf, sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    /* A refused connect is the write side's to report (libevent's read callback leaves it to
     * the connect check too); the failed socket stays readable until then, in this same turn. */
    if (n < 0 && errno == ECONNREFUSED && bufferevent_get_enabled(bev) & EV_WRITE)
        return;
    bufferevent_data_cb on_read;
    bufferevent_event_cb on_event;
    void *cbarg;
    bufferevent_getcb(bev, &on_read, NULL, &on_event, &cbarg);
    if (n > 0) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_unfreeze(in, 0); /* a socket bufferevent's input is frozen at its end */
        int rc = evbuffer_add(in, buf, (size_t)n);
        evbuffer_freeze(in, 0);
        if (rc == 0) {
            if (on_read)
                on_read(bev, cbarg); /* last: it may free bev */
            return;
        }
    }
    bufferevent_disable(bev, EV_READ);
    if (on_event) /* last: it may free bev */
        on_event(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), cbarg);
}

void bb_sockread_take(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0)
        return;
    bool on = event_pending(&bev->ev_read, EV_READ, NULL);
    if (on)
        event_del(&bev->ev_read);
    /* the flags libevent gives the event (EV_FINALIZE: bufferevent_free finalizes it) */
    event_assign(&bev->ev_read, bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST | EV_FINALIZE,
                 read_cb, bev);
    if (on)
        event_add(&bev->ev_read, NULL); /* busbar sets no read timeouts */
}
