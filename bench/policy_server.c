/*
 * policy_server: the benchmark's Unix-socket routing policy (bench/bench.py, target "socket").
 * Answers every line it reads with one fixed line, at once, so the measured cost is busbar's
 * (encode, write, wake up, parse, decide) plus one loopback round trip, not a policy's own
 * thinking. Usage: bb-policy-server PATH ANSWER. Single-threaded poll(2) loop.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 64

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH ANSWER\n", argv[0]);
        return 2;
    }
    size_t alen = strlen(argv[2]);
    char *answer = malloc(alen + 2);
    memcpy(answer, argv[2], alen);
    answer[alen++] = '\n';
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", argv[1]);
    unlink(argv[1]);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(ls, 64) < 0) {
        perror(argv[1]);
        return 1;
    }
    struct pollfd fds[MAX_CONNS + 1] = {{.fd = ls, .events = POLLIN}};
    int n = 1;
    char buf[65536];
    for (;;) {
        if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
            return 1;
        for (int i = n - 1; i >= 1; i--) {
            if (!fds[i].revents)
                continue;
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r <= 0) {
                close(fds[i].fd);
                fds[i] = fds[--n];
                continue;
            }
            for (ssize_t k = 0; k < r; k++) /* one answer per line */
                if (buf[k] == '\n' && write(fds[i].fd, answer, alen) != (ssize_t)alen) {
                    close(fds[i].fd);
                    fds[i] = fds[--n];
                    break;
                }
        }
        if (fds[0].revents & POLLIN) {
            int c = accept(ls, NULL, NULL);
            if (c >= 0 && n <= MAX_CONNS)
                fds[n++] = (struct pollfd){.fd = c, .events = POLLIN};
            else if (c >= 0)
                close(c);
        }
    }
}
