/*
 * fuzz_config.c — libFuzzer target for the YAML loader: config_load_buffer() on arbitrary
 * bytes, and, when a file is accepted, the lookups the proxy makes on the result.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Config *cfg = NULL;
    char err[CONFIG_ERR_LEN];
    if (!config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, err, sizeof err)) {
        if (!memchr(err, 0, sizeof err) || strncmp(err, "fuzz.yaml", 9) != 0)
            abort(); /* errors are one "FILE:LINE: ..." line */
        return 0;
    }
    for (size_t i = 0; i < cfg->n_tables; i++) {
        if (config_table(cfg, cfg->tables[i].name) != &cfg->tables[i])
            abort(); /* sorted, unique */
        (void)config_table_ttl_ms(cfg, cfg->tables[i].name);
    }
    for (size_t i = 0; i < cfg->n_functions; i++)
        if (config_function(cfg, cfg->functions[i].name) != &cfg->functions[i])
            abort();
    (void)config_table_ttl_ms(cfg, "no_such_table");
    (void)config_worker_count(cfg);
    (void)config_consistency_name(cfg->cache.consistency);
    (void)config_log_level_name(cfg->log.level);
    (void)config_log_format_name(cfg->log.format);
    char oerr[CONFIG_ERR_LEN];
    if (!config_override(cfg, "redis", "redis://u:p@127.0.0.1:6380/2", oerr, sizeof oerr))
        abort();
    config_free(cfg);
    return 0;
}
