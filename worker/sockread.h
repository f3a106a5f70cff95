/*
 * sockread: the read side of a plain-socket bufferevent without libevent's FIONREAD ioctl.
 * libevent 2.1's evbuffer_read asks the kernel how many bytes wait before every read (one
 * ioctl per read, two per proxied request) and reads at most 4 KiB at a time. Taken over, the
 * bufferevent's read event calls recv() for up to 16 KiB into a stack buffer, appends the bytes
 * to the bufferevent's input and runs the bufferevent's own read callback, or on EOF or error
 * disables reading and runs its event callback with BEV_EVENT_READING, as libevent does.
 * Everything else stays the bufferevent's: enabling and disabling EV_READ, the output, the
 * write event, timeouts, callbacks. Worker process; single-threaded.
 */
#ifndef BB_SOCKREAD_H
#define BB_SOCKREAD_H

#include <event2/bufferevent.h>

/* Take over the reads of bev, a bufferevent_socket with its socket set (after
 * bufferevent_socket_connect for one that connects; bufferevent_setfd gives libevent its own
 * read callback back, so call this again after it). Keeps the read event's pending state. */
void bb_sockread_take(struct bufferevent *bev);

#endif
