/*
 * http.c — a minimal HTTP/1.0 server for /metrics, /stats and /healthz. It runs on the main
 * thread, so a slow scraper can never delay client traffic on the workers.
 */
#include "proxy/http.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/buf.h"
#include "proxy/log.h"
#include "proxy/report.h"

#define REQ_MAX 8192
#define CONN_TIMEOUT 5.0

typedef struct HttpConn {
    struct HttpConn *next;
    int fd;
    ev_io io;
    ev_timer timer;
    char req[REQ_MAX];
    size_t req_len;
    ByteWriter resp;
    size_t sent;
} HttpConn;

static int listen_fd = -1;
static ev_io accept_io;
static HttpContext context;
static HttpConn *conns;

static void conn_close(struct ev_loop *loop, HttpConn *h)
{
    ev_io_stop(loop, &h->io);
    ev_timer_stop(loop, &h->timer);
    close(h->fd);
    for (HttpConn **p = &conns; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            break;
        }
    bw_free(&h->resp);
    free(h);
}

static void respond(HttpConn *h, int status, const char *reason, const char *ctype,
                    const void *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, ctype, len);
    bw_put(&h->resp, head, (size_t)n);
    bw_put(&h->resp, body, len);
}

static void route(HttpConn *h)
{
    char method[16], path[256];
    if (sscanf(h->req, "%15s %255s", method, path) != 2) {
        respond(h, 400, "Bad Request", "text/plain", "bad request\n", 12);
        return;
    }
    char *q = strchr(path, '?');
    if (q)
        *q = 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        respond(h, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        ByteWriter body = {0};
        report_prometheus(context.workers, context.n_workers, &body);
        respond(h, 200, "OK", "text/plain; version=0.0.4", body.data, body.len);
        bw_free(&body);
    } else if (strcmp(path, "/stats") == 0) {
        json_t *o = report_json(context.workers, context.n_workers);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (s) {
            respond(h, 200, "OK", "application/json", s, strlen(s));
            free(s);
        } else {
            respond(h, 500, "Internal Server Error", "text/plain", "error\n", 6);
        }
    } else if (strcmp(path, "/healthz") == 0) {
        char reason[512] = "ok";
        bool ok = context.healthy ? context.healthy(reason, sizeof reason) : true;
        char body[600];
        int n = snprintf(body, sizeof body, "%s\n", reason);
        if (ok)
            respond(h, 200, "OK", "text/plain", body, (size_t)n);
        else
            respond(h, 503, "Service Unavailable", "text/plain", body, (size_t)n);
    } else {
        respond(h, 404, "Not Found", "text/plain", "not found\n", 10);
    }
}

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
    HttpConn *h = w->data;
    if (revents & EV_READ) {
        ssize_t n = read(h->fd, h->req + h->req_len, REQ_MAX - 1 - h->req_len);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            conn_close(loop, h);
            return;
        }
        h->req_len += (size_t)n;
        h->req[h->req_len] = 0;
        if (!strstr(h->req, "\r\n\r\n") && !strstr(h->req, "\n\n")) {
            if (h->req_len >= REQ_MAX - 1) {
                respond(h, 431, "Request Header Fields Too Large", "text/plain", "too large\n",
                        10);
            } else {
                return;
            }
        } else {
            route(h);
        }
        ev_io_stop(loop, &h->io);
        ev_io_set(&h->io, h->fd, EV_WRITE);
        ev_io_start(loop, &h->io);
        return;
    }
    if (h->resp.failed) {
        conn_close(loop, h);
        return;
    }
    ssize_t n = send(h->fd, h->resp.data + h->sent, h->resp.len - h->sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(loop, h);
        return;
    }
    h->sent += (size_t)n;
    if (h->sent == h->resp.len)
        conn_close(loop, h);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    conn_close(loop, t->data);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        HttpConn *h = calloc(1, sizeof *h);
        if (!h) {
            close(fd);
            continue;
        }
        h->fd = fd;
        ev_io_init(&h->io, on_conn_io, fd, EV_READ);
        h->io.data = h;
        ev_timer_init(&h->timer, on_conn_timeout, CONN_TIMEOUT, 0.);
        h->timer.data = h;
        ev_io_start(loop, &h->io);
        ev_timer_start(loop, &h->timer);
        h->next = conns;
        conns = h;
    }
}

bool http_start(struct ev_loop *loop, const HostPort *addr, const HttpContext *ctx, char *err,
                size_t errlen)
{
    context = *ctx;
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", addr->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(addr->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "admin.listen %s:%d: %s", addr->host, addr->port,
                 gai_strerror(rc));
        return false;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "admin.listen %s:%d: %s", addr->host, addr->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return false;
    }
    freeaddrinfo(res);
    listen_fd = fd;
    ev_io_init(&accept_io, on_accept, fd, EV_READ);
    ev_io_start(loop, &accept_io);
    return true;
}

void http_stop(struct ev_loop *loop)
{
    if (listen_fd >= 0) {
        ev_io_stop(loop, &accept_io);
        close(listen_fd);
        listen_fd = -1;
    }
    while (conns)
        conn_close(loop, conns);
}
