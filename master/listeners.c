/*
 * listeners: bind/listen once, reference-count per generation. Master process only.
 * Keys are the numeric form of the first resolved address ("127.0.0.1:8080", "[::1]:8080"),
 * so "localhost:8080" and "127.0.0.1:8080" share one socket across a reload.
 */
#include "master/listeners.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

#define BB_LISTEN_BACKLOG 4096

static int resolve(const struct bb_listen *l, struct addrinfo **res, struct bb_err *err)
{
    const char *host = l->host;
    if (!host || !*host || strcmp(host, "*") == 0)
        host = "0.0.0.0";
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)l->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, res);
    if (rc != 0)
        return bb_err_set(err, "listen %s: cannot resolve %s: %s", l->addr, host, gai_strerror(rc));
    return 0;
}

static void addr_key(const struct sockaddr *sa, socklen_t len, char *out, size_t n)
{
    char h[NI_MAXHOST], s[NI_MAXSERV];
    if (getnameinfo(sa, len, h, sizeof h, s, sizeof s, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, n, "?");
        return;
    }
    if (sa->sa_family == AF_INET6)
        snprintf(out, n, "[%s]:%s", h, s);
    else
        snprintf(out, n, "%s:%s", h, s);
}

static int bind_ai(const struct addrinfo *ai, const char *addr, struct bb_err *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return bb_err_set(err, "listen %s: socket: %s", addr, strerror(errno));
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    if (ai->ai_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto fail;
    if (listen(fd, BB_LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return bb_err_set(err, "cannot listen on %s: %s", addr, strerror(e));
}

int bb_listeners_acquire(struct bb_master *m, const struct bb_listen *l, char **key_out,
                         struct bb_err *err)
{
    struct addrinfo *res;
    if (resolve(l, &res, err) < 0)
        return -1;
    char key[NI_MAXHOST + NI_MAXSERV + 4];
    addr_key(res->ai_addr, res->ai_addrlen, key, sizeof key);
    for (struct bb_listener *x = m->listeners; x; x = x->next) {
        if (strcmp(x->key, key) == 0) {
            x->refs++;
            freeaddrinfo(res);
            *key_out = bb_xstrdup(key);
            return x->fd;
        }
    }
    int fd = bind_ai(res, l->addr, err);
    if (fd < 0) {
        freeaddrinfo(res);
        return -1;
    }
    /* Log the bound address (the real port when 0 was asked for). */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char shown[sizeof key];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        addr_key((struct sockaddr *)&ss, sl, shown, sizeof shown);
    else
        snprintf(shown, sizeof shown, "%s", key);
    freeaddrinfo(res);
    bb_notice("listening on %s (fd %d)", shown, fd);

    struct bb_listener *x = bb_xcalloc(1, sizeof *x);
    x->key = bb_xstrdup(key);
    x->addr = bb_xstrdup(l->addr);
    x->fd = fd;
    x->refs = 1;
    x->next = m->listeners;
    m->listeners = x;
    *key_out = bb_xstrdup(key);
    return fd;
}

void bb_listeners_release(struct bb_master *m, const char *key)
{
    for (struct bb_listener **pp = &m->listeners; *pp; pp = &(*pp)->next) {
        struct bb_listener *x = *pp;
        if (strcmp(x->key, key) != 0)
            continue;
        if (--x->refs == 0) {
            bb_notice("closing listener %s", x->addr);
            close(x->fd);
            *pp = x->next;
            free(x->key);
            free(x->addr);
            free(x);
        }
        return;
    }
}

void bb_listeners_close_others(struct bb_master *m, const struct bb_runtime *rt)
{
    for (struct bb_listener *x = m->listeners; x; x = x->next) {
        int used = 0;
        for (size_t i = 0; i < rt->n_listen; i++)
            used |= rt->listen_fds[i] == x->fd;
        if (!used)
            close(x->fd);
    }
}
