/*
 * fuzz_config: libFuzzer target for the config loader (common/config.c, config_doc.c). The
 * input is a config.yaml, optionally followed by a line "#--providers--" and a providers
 * catalogue; both are handed to bb_conf_load as files (memfds). Checks that the loader either
 * returns a configuration and no error, or no configuration and at least one located error
 * (file:line:col: message), and that what it returns is consistent and frees cleanly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define SPLIT "\n#--providers--\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A memfd holding p[0..n); its path in path. -1 on failure. */
static int memfile(const char *name, const void *p, size_t n, char *path, size_t cap)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (n && write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    const char *s = (const char *)data;
    const char *split = memmem(s, size, SPLIT, sizeof SPLIT - 1);
    size_t cl = split ? (size_t)(split - s) : size;
    const char *prov = split ? split + sizeof SPLIT - 1 : "";
    size_t pl = split ? size - cl - (sizeof SPLIT - 1) : 0;

    char cpath[64], ppath[64];
    int cfd = memfile("config.yaml", s, cl, cpath, sizeof cpath);
    int pfd = memfile("providers.yaml", prov, pl, ppath, sizeof ppath);
    if (cfd < 0 || pfd < 0)
        abort();

    struct bb_conf_errors errs = {0};
    struct bb_conf *c = bb_conf_load(cpath, ppath, &errs);
    if (c) {
        CHECK(errs.n == 0);
        for (size_t i = 0; i < c->n_lanes; i++) {
            CHECK(c->lanes[i].name && c->lanes[i].provider >= 0 &&
                  (size_t)c->lanes[i].provider < c->n_providers);
            CHECK(bb_conf_find_lane(c, c->lanes[i].name, strlen(c->lanes[i].name)) >= 0);
        }
        for (size_t i = 0; i < c->n_pools; i++)
            for (size_t m = 0; m < c->pools[i].n_members; m++)
                CHECK(c->pools[i].members[m].lane >= 0 &&
                      (size_t)c->pools[i].members[m].lane < c->n_lanes);
        for (size_t i = 0; i < c->n_providers; i++) {
            CHECK((unsigned)c->providers[i].protocol < BB_PROTO__COUNT);
            for (const char *k = c->providers[i].api_key; k && *k; k++)
                CHECK((unsigned char)*k >= 0x20 && *k != 0x7f); /* key hygiene at load */
        }
        bb_conf_free(c);
    } else {
        CHECK(errs.n > 0);
        for (size_t i = 0; i < errs.n; i++)
            CHECK(errs.v[i].file && errs.v[i].msg && errs.v[i].msg[0] && errs.v[i].line >= 0 &&
                  errs.v[i].col >= 0);
    }
    bb_conf_errors_free(&errs);
    close(cfd);
    close(pfd);
    return 0;
}
