/*
 * main.c — pgstash's entry point: command line, configuration, worker threads, and the main
 * thread's loop (signals: SIGHUP reloads, SIGTERM/SIGINT drain and exit; the stats line;
 * the HTTP endpoint; freeing retired config snapshots once every worker moved on).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/catalog.h"
#include "proxy/health.h"
#include "proxy/http.h"
#include "proxy/log.h"
#include "proxy/report.h"
#include "proxy/runtime.h"
#include "proxy/scram.h"
#include "proxy/subscriber.h"
#include "proxy/versions.h"
#include "proxy/worker.h"

#ifndef PGSTASH_VERSION
#define PGSTASH_VERSION "0.0.0"
#endif
#ifndef PGSTASH_GITREV
#define PGSTASH_GITREV "unknown"
#endif

typedef struct {
    const char *config_path; /* -c FILE, or NULL for defaults */
    const char *listen;      /* --listen override */
    const char *upstream;    /* --upstream override */
    const char *redis;       /* --redis override */
    bool check_only;         /* --check-config */
} Options;

static Options opts;
static Worker *workers;
static Worker **worker_ptrs;
static int n_workers;
static Snapshot *retired;    /* old snapshots not yet released by every worker */
static uint64_t snapshot_gen;
static StatsTotals stats_prev;
static ev_timer stats_timer, reclaim_timer, shutdown_watch;
static ev_signal sighup, sigterm, sigint;
static bool http_running;

static void usage(FILE *to)
{
    fprintf(to,
            "pgstash %s — a transparent caching proxy for PostgreSQL\n"
            "\n"
            "Usage: pgstash [-c FILE] [options]\n"
            "\n"
            "  -c, --config FILE     YAML configuration (default: built-in defaults)\n"
            "      --listen H:P      where applications connect (overrides listen:)\n"
            "      --upstream H:P    the real PostgreSQL (overrides upstream:)\n"
            "      --redis URL       redis://[[user]:password@]host:port/db (overrides redis:)\n"
            "      --check-config    validate the configuration and exit\n"
            "      --make-secret     read a password on stdin, print its SCRAM-SHA-256 secret\n"
            "                        (for admin.users)\n"
            "  -V, --version         print the version and exit\n"
            "  -h, --help            this help\n"
            "\n"
            "Signals: SIGHUP reloads the configuration; SIGTERM stops accepting, lets\n"
            "running statements finish, and exits.\n",
            PGSTASH_VERSION);
}

/* Loads the file (or defaults) and applies the command-line overrides. */
static bool load_config(Config **out, char *err, size_t errlen)
{
    Config *cfg = NULL;
    if (opts.config_path) {
        if (!config_load(opts.config_path, &cfg, err, errlen))
            return false;
    } else {
        cfg = config_defaults();
        if (!cfg) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
    }
    const struct {
        const char *key, *value;
    } overrides[] = {{"listen", opts.listen}, {"upstream", opts.upstream}, {"redis", opts.redis}};
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
        if (overrides[i].value &&
            !config_override(cfg, overrides[i].key, overrides[i].value, err, errlen)) {
            config_free(cfg);
            return false;
        }
    }
    *out = cfg;
    return true;
}

static bool all_workers_saw(uint64_t gen)
{
    for (int i = 0; i < n_workers; i++)
        if (!atomic_load(&workers[i].finished) && atomic_load(&workers[i].seen_gen) < gen)
            return false;
    return true;
}

static void reclaim_snapshots(void)
{
    const Snapshot *cur = runtime_snapshot();
    Snapshot **link = &retired;
    while (*link) {
        Snapshot *s = *link;
        if (all_workers_saw(cur->gen)) {
            *link = s->retired_next;
            snapshot_free(s);
        } else {
            link = &s->retired_next;
        }
    }
}

static void reload(void)
{
    char err[CONFIG_ERR_LEN];
    Config *cfg;
    if (!load_config(&cfg, err, sizeof err)) {
        log_error("reload failed, keeping the running configuration: %s", err);
        return;
    }
    Snapshot *snap;
    if (!snapshot_build(cfg, ++snapshot_gen, &snap, err, sizeof err)) {
        log_error("reload failed, keeping the running configuration: %s", err);
        config_free(cfg);
        return;
    }
    Snapshot *old = atomic_load(&rt.snap);
    if (strcmp(old->cfg->listen.host, cfg->listen.host) != 0 ||
        old->cfg->listen.port != cfg->listen.port)
        log_warn("reload: a new listen address takes effect only after a restart");
    if (old->cfg->workers != cfg->workers)
        log_warn("reload: a new worker count takes effect only after a restart");
    log_configure(cfg->log.level, cfg->log.format);
    atomic_store_explicit(&rt.snap, snap, memory_order_release);
    catalog_invalidate_all(); /* function volatility and relation kinds are read again */
    subscriber_reconfigure(cfg);
    old->retired_next = retired;
    retired = old;
    for (int i = 0; i < n_workers; i++)
        worker_wake(&workers[i]);
    /* "Reloaded" should mean "in effect": a statement sent after the log line (or after
     * RELOAD's answer) must see the new rules. Workers adopt the snapshot before their loop
     * next blocks, normally within a millisecond; wait for that, but not for ever. */
    for (int waited_ms = 0; !all_workers_saw(snap->gen) && waited_ms < 2000; waited_ms++)
        usleep(1000);
    if (!all_workers_saw(snap->gen))
        log_warn("reload: a worker has not picked up the new configuration within 2 s");
    log_info("configuration reloaded from %s", opts.config_path ? opts.config_path : "defaults");
    if (stats_timer.repeat != cfg->log.stats_interval_ms / 1000.0) {
        ev_timer_stop(EV_DEFAULT, &stats_timer);
        if (cfg->log.stats_interval_ms > 0) {
            ev_timer_set(&stats_timer, cfg->log.stats_interval_ms / 1000.0,
                         cfg->log.stats_interval_ms / 1000.0);
            ev_timer_start(EV_DEFAULT, &stats_timer);
        }
    }
}

static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
    reload();
}

static void on_shutdown_watch(struct ev_loop *loop, ev_timer *w, int revents)
{
    reclaim_snapshots();
    for (int i = 0; i < n_workers; i++)
        if (!atomic_load(&workers[i].finished))
            return;
    ev_break(loop, EVBREAK_ALL);
}

static void on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (atomic_load(&rt.shutting_down)) {
        log_warn("second termination signal: exiting now");
        _exit(0);
    }
    const Config *cfg = runtime_snapshot()->cfg;
    log_info("shutting down: no new connections; waiting up to %lld ms for running statements",
             (long long)cfg->limits.shutdown_grace_ms);
    atomic_store(&rt.shutdown_deadline_ms, clock_ms() + cfg->limits.shutdown_grace_ms);
    atomic_store(&rt.shutting_down, true);
    for (int i = 0; i < n_workers; i++)
        worker_wake(&workers[i]);
    ev_timer_stop(loop, &stats_timer);
    subscriber_stop();
    if (http_running)
        http_stop(loop);
    http_running = false;
    ev_timer_init(&shutdown_watch, on_shutdown_watch, 0.05, 0.05);
    ev_timer_start(loop, &shutdown_watch);
}

static void on_stats_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    report_log(worker_ptrs, n_workers, &stats_prev);
}

/*
 * After a crowd of connections has gone, hand their freed buffers back to the system: glibc
 * keeps freed memory in each worker's arena, so RSS would otherwise stay at the high-water
 * mark of the busiest moment (a connection storm, a burst of clients hanging up after their
 * StartupMessage). Sampled once a second; trimming costs a few ms, only after such a drop.
 */
static void trim_after_crowd(void)
{
    static int peak;
    int now = atomic_load(&rt.clients);
    if (now > peak)
        peak = now;
    if (peak - now >= 128) {
        malloc_trim(0);
        peak = now;
    }
}

static void on_reclaim_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    reclaim_snapshots();
    trim_after_crowd();
}

/* --make-secret: one line from stdin (no echo when it is a terminal) → a SCRAM secret. */
static int make_secret(void)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    char password[1024];
    bool got = fgets(password, sizeof password, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fprintf(stderr, "\n");
    }
    if (!got) {
        fprintf(stderr, "pgstash: no password on stdin\n");
        return 1;
    }
    password[strcspn(password, "\r\n")] = 0;
    if (!password[0]) {
        fprintf(stderr, "pgstash: empty password\n");
        return 1;
    }
    char secret[256];
    bool ok = scram_make_secret(password, 4096, secret, sizeof secret);
    explicit_bzero(password, sizeof password);
    if (!ok) {
        fprintf(stderr, "pgstash: cannot make a secret\n");
        return 1;
    }
    printf("%s\n", secret);
    return 0;
}

static int parse_args(int argc, char **argv)
{
    enum { OPT_LISTEN = 256, OPT_UPSTREAM, OPT_REDIS, OPT_CHECK, OPT_SECRET };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"upstream", required_argument, NULL, OPT_UPSTREAM},
        {"redis", required_argument, NULL, OPT_REDIS},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"make-secret", no_argument, NULL, OPT_SECRET},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opts.config_path = optarg;
            break;
        case OPT_LISTEN:
            opts.listen = optarg;
            break;
        case OPT_UPSTREAM:
            opts.upstream = optarg;
            break;
        case OPT_REDIS:
            opts.redis = optarg;
            break;
        case OPT_CHECK:
            opts.check_only = true;
            break;
        case OPT_SECRET:
            exit(make_secret());
        case 'V':
            printf("pgstash %s (%s)\n", PGSTASH_VERSION, PGSTASH_GITREV);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pgstash: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc != 0)
        return rc;

    char err[CONFIG_ERR_LEN];
    Config *cfg;
    if (!load_config(&cfg, err, sizeof err)) {
        fprintf(stderr, "pgstash: %s\n", err);
        return 1;
    }
    if (opts.check_only) {
        printf("%s: configuration OK\n", opts.config_path ? opts.config_path : "defaults");
        config_free(cfg);
        return 0;
    }
    log_configure(cfg->log.level, cfg->log.format);
    signal(SIGPIPE, SIG_IGN);
    /* The handled signals stay blocked until the main loop's handlers are installed: every
     * thread started meanwhile inherits the mask (so only this thread ever gets them), and
     * a SIGTERM sent as soon as the port accepts (the backlog does, before any worker runs)
     * waits and drains instead of killing the process. */
    sigset_t handled, previous;
    sigemptyset(&handled);
    sigaddset(&handled, SIGHUP);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    pthread_sigmask(SIG_BLOCK, &handled, &previous);
    rt.started_ms = clock_ms();
    versions_init();

    Snapshot *snap;
    if (!snapshot_build(cfg, ++snapshot_gen, &snap, err, sizeof err)) {
        fprintf(stderr, "pgstash: %s\n", err);
        config_free(cfg);
        return 1;
    }
    atomic_store(&rt.snap, snap);

    n_workers = config_worker_count(cfg);
    workers = calloc((size_t)n_workers, sizeof *workers);
    worker_ptrs = calloc((size_t)n_workers, sizeof *worker_ptrs);
    if (!workers || !worker_ptrs) {
        fprintf(stderr, "pgstash: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n_workers; i++) {
        workers[i].index = i;
        workers[i].listen_fd = -1;
        workers[i].spare_fd = -1;
        worker_ptrs[i] = &workers[i];
        if (!worker_listen(&workers[i], &cfg->listen, err, sizeof err)) {
            log_error("%s", err);
            return 1;
        }
    }

    struct ev_loop *loop = EV_DEFAULT;
    if (cfg->admin.listen_set) {
        HttpContext hc = {worker_ptrs, n_workers, health_check};
        if (!http_start(loop, &cfg->admin.listen, &hc, err, sizeof err)) {
            log_error("%s", err);
            return 1;
        }
        http_running = true;
        if (!health_start()) {
            log_error("cannot start the health checker");
            return 1;
        }
    }
    rt.workers = workers;
    rt.n_workers = n_workers;
    rt.config_path = opts.config_path;
    if (!catalog_start(workers, n_workers)) {
        log_error("cannot start the catalog thread");
        return 1;
    }
    for (int i = 0; i < n_workers; i++) {
        if (!worker_start(&workers[i])) {
            log_error("cannot start worker %d", i);
            return 1;
        }
    }
    log_info("pgstash %s listening on %s:%d, upstream %s, redis %s:%d/%d, %d workers, cache %s "
             "(%s)",
             PGSTASH_VERSION, cfg->listen.host, cfg->listen.port, snap->upstream_desc,
             cfg->redis.addr.host, cfg->redis.addr.port, cfg->redis.db, n_workers,
             cfg->cache.enabled ? "on" : "off", config_consistency_name(cfg->cache.consistency));

    subscriber_start(loop, cfg);
    ev_signal_init(&sighup, on_sighup, SIGHUP);
    ev_signal_start(loop, &sighup);
    ev_signal_init(&sigterm, on_sigterm, SIGTERM);
    ev_signal_start(loop, &sigterm);
    ev_signal_init(&sigint, on_sigterm, SIGINT);
    ev_signal_start(loop, &sigint);
    pthread_sigmask(SIG_SETMASK, &previous, NULL); /* see the block above */
    if (cfg->log.stats_interval_ms > 0) {
        ev_timer_init(&stats_timer, on_stats_timer, cfg->log.stats_interval_ms / 1000.0,
                      cfg->log.stats_interval_ms / 1000.0);
        ev_timer_start(loop, &stats_timer);
    }
    ev_timer_init(&reclaim_timer, on_reclaim_timer, 1.0, 1.0);
    ev_timer_start(loop, &reclaim_timer);

    ev_run(loop, 0);

    for (int i = 0; i < n_workers; i++)
        pthread_join(workers[i].thread, NULL);
    catalog_stop();
    health_stop();
    for (int i = 0; i < n_workers; i++) {
        tablestats_free(&workers[i].tables);
        tablestats_free(&workers[i].queries);
        ev_loop_destroy(workers[i].loop);
        if (workers[i].spare_fd >= 0)
            close(workers[i].spare_fd);
    }
    log_info("pgstash stopped");
    while (retired) {
        Snapshot *s = retired;
        retired = s->retired_next;
        snapshot_free(s);
    }
    snapshot_free(atomic_load(&rt.snap));
    versions_free();
    subscriber_free();
    http_stop(loop);
    ev_loop_destroy(loop);
    free(workers);
    free(worker_ptrs);
    return 0;
}
