/*
 * runtime.c — the shared runtime state and the building of config snapshots.
 */
#include "proxy/runtime.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

Runtime rt;

bool snapshot_build(Config *cfg, uint64_t gen, Snapshot **out, char *err, size_t errlen)
{
    Snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    s->cfg = cfg;
    s->gen = gen;
    const HostPort *up = &cfg->upstream;
    if (up->host[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)&s->upstream;
        un->sun_family = AF_UNIX;
        int n = snprintf(un->sun_path, sizeof un->sun_path, "%s/.s.PGSQL.%d", up->host,
                         up->port);
        if (n < 0 || (size_t)n >= sizeof un->sun_path) {
            snprintf(err, errlen, "upstream: socket path too long: %s", up->host);
            free(s);
            return false;
        }
        s->upstream_len = sizeof *un;
        snprintf(s->upstream_desc, sizeof s->upstream_desc, "%s", un->sun_path);
    } else {
        struct addrinfo hints = {0}, *res = NULL;
        char port[16];
        snprintf(port, sizeof port, "%d", up->port);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(up->host, port, &hints, &res);
        if (rc != 0 || !res) {
            snprintf(err, errlen, "upstream %s:%d: %s", up->host, up->port, gai_strerror(rc));
            free(s);
            return false;
        }
        memcpy(&s->upstream, res->ai_addr, res->ai_addrlen);
        s->upstream_len = res->ai_addrlen;
        freeaddrinfo(res);
        if (strchr(up->host, ':'))
            snprintf(s->upstream_desc, sizeof s->upstream_desc, "[%s]:%d", up->host, up->port);
        else
            snprintf(s->upstream_desc, sizeof s->upstream_desc, "%s:%d", up->host, up->port);
    }
    *out = s;
    return true;
}

void snapshot_free(Snapshot *s)
{
    if (!s)
        return;
    config_free(s->cfg);
    free(s);
}
