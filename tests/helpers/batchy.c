/* batchy: see batchy.h. */
#include "batchy.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "tree.h"
#include "util.h"

int batchy_start(struct mock_proc *m)
{
    const char *script = "tests/servers/batchy.py";
    struct stat sb;
    if (stat(script, &sb) != 0)
        script = "../tests/servers/batchy.py";
    const char *argv[] = {"python3", script, NULL};
    return listener_start(m, argv, 0);
}

static int is_bad(const struct batchy_case *c, int i)
{
    for (int k = 0; k < c->n_bad; k++)
        if (c->bad[k] == i)
            return 1;
    return 0;
}

static void file_name(const struct batchy_case *c, int i, char *name, size_t len)
{
    snprintf(name, len, "%s%03d.png", is_bad(c, i) ? "bad" : "img", i);
}

/* A fresh directory with the tree in t/ (see batchy.h) and the names of the run's files. */
static int make_dirs(const struct batchy_case *c, char *base, char *root, char *csv, char *cfg, size_t len)
{
    if (!mkdtemp(base))
        return -1;
    snprintf(root, len, "%s/t", base);
    snprintf(csv, len, "%s/r.csv", base);
    snprintf(cfg, len, "%s/p.json", base);
    if (mkdir(root, 0755) != 0)
        return -1;
    for (int i = 0; i < c->n; i++) {
        char name[32], p[700], data[400];
        file_name(c, i, name, sizeof name);
        snprintf(p, sizeof p, "%s/%s", root, name);
        memset(data, 'a' + i % 26, sizeof data);
        if (write_file(p, data, (size_t)(30 + i * 3)) != 0)
            return -1;
    }
    return 0;
}

static int write_pipeline(const struct batchy_case *c, const char *path, const char *server)
{
    static const char item[] = "{\"name\": \"{{name}}\", \"b64\": \"{{image}}\"}";
    char text[2048], body[256], batch[256];
    if (c->batch) {
        snprintf(body, sizeof body, "{\"instances\": \"{{batch}}\", \"n\": \"{{batch.size}}\"}");
        snprintf(batch, sizeof batch, ", \"batch\": {\"size\": %d, \"max_wait_ms\": %d, \"item\": %s}", c->batch,
                 c->wait_ms ? c->wait_ms : 50, item);
    } else {
        snprintf(body, sizeof body, "{\"instances\": [%s]}", item);
        batch[0] = 0;
    }
    cJSON *r = cJSON_CreateString(c->result ? c->result : c->batch ? ".predictions" : ".predictions[0]");
    cJSON *e = cJSON_CreateString(c->error ? c->error : ".error");
    char *result = cJSON_PrintUnformatted(r), *error = cJSON_PrintUnformatted(e);
    cJSON_Delete(r);
    cJSON_Delete(e);
    if (result && error)
        snprintf(text, sizeof text,
                 "{\"stages\": [{\"name\": \"m\", \"url\": \"%s%s\", \"retries\": 2, \"body\": %s%s, \"result\": %s,"
                 " \"error\": %s}]}",
                 server, c->endpoint, body, batch, result, error);
    int rc = result && error ? write_file(path, text, strlen(text)) : -1;
    free(result);
    free(error);
    return rc;
}

/* Good file i's cell: base64 of 30 + 3i bytes is 4 * ceil(len / 3) characters; the pad of a
 * /big/P endpoint; json.dumps's spaces, or jq's compact text. */
static void good_cell(const struct batchy_case *c, const char *name, int i, char *cell, size_t len)
{
    int pad = !strncmp(c->endpoint, "/big/", 5) ? atoi(c->endpoint + 5) : 0;
    const char *sp = c->result ? "" : " ";
    int o = snprintf(cell, len, "{\"name\":%s\"%s\",%s\"len\":%s%d", sp, name, sp, sp, 4 * ((30 + i * 3 + 2) / 3));
    if (pad) {
        o += snprintf(cell + o, len - (size_t)o, ",%s\"pad\":%s\"", sp, sp);
        for (int k = 0; k < pad && (size_t)o + 3 < len; k++)
            cell[o++] = 'x';
        cell[o++] = '"';
    }
    snprintf(cell + o, len - (size_t)o, "}");
}

/* The row of file name (path, status, m, error, attempts, elapsed_ms), or NULL. */
static const struct e2e_row *row_of(const struct e2e_csv *csv, const char *name)
{
    for (size_t i = 0; i < csv->n; i++) {
        const char *slash = strrchr(csv->rows[i].f[0].s, '/');
        if (csv->rows[i].n >= 5 && slash && !strcmp(slash + 1, name))
            return &csv->rows[i];
    }
    return NULL;
}

static void check_rows(const struct batchy_case *c, const char *csv_path)
{
    struct e2e_csv csv;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(csv_path, &csv), 0);
    CHECKF(csv.n == (size_t)c->n, "%s: %zu rows for %d files", c->endpoint, csv.n, c->n);
    static char cell[40000];
    for (int i = 0; i < c->n; i++) {
        char name[32];
        file_name(c, i, name, sizeof name);
        const struct e2e_row *r = row_of(&csv, name);
        CHECKF(r != NULL, "%s: no row for %s", c->endpoint, name);
        if (!r)
            continue;
        const char *status = r->f[1].s, *got = r->f[2].s, *err = r->f[3].s;
        if (c->want_all) {
            CHECKF(!strcmp(status, "failed") && strstr(err, c->want_all), "%s: %s: %s %s", c->endpoint, name, status,
                   err);
        } else if (is_bad(c, i)) {
            CHECKF(!strcmp(status, "failed") && strstr(err, c->want_bad) && !got[0], "%s: %s: %s %s", c->endpoint, name,
                   status, err);
            CHECKF(c->bad_attempts <= 0 || atoi(r->f[4].s) == c->bad_attempts, "%s: %s: %s attempts, want %d",
                   c->endpoint, name, r->f[4].s, c->bad_attempts);
        } else {
            good_cell(c, name, i, cell, sizeof cell);
            CHECKF(!strcmp(status, "ok") && !strcmp(got, cell), "%s: %s: %s [%.200s] want [%.200s] %s", c->endpoint,
                   name, status, got, cell, err);
        }
    }
    e2e_csv_free(&csv);
}

cJSON *batchy_run(struct batchy_case *c)
{
    struct mock_proc srv;
    if (batchy_start(&srv) != 0) {
        CU_FAIL("tests/servers/batchy.py did not start");
        return NULL;
    }
    char base[] = "/tmp/annotate-batchy-XXXXXX", root[600], csv[600], cfg[600];
    CU_ASSERT_EQUAL_FATAL(make_dirs(c, base, root, csv, cfg, sizeof root), 0);
    CU_ASSERT_EQUAL_FATAL(write_pipeline(c, cfg, srv.base_url), 0);
    char out[8192];
    const char *extra[32] = {"--config", cfg, "--concurrency", "4", "--backoff-ms", "1", "--backoff-max-ms", "5"};
    int k = 8;
    for (int i = 0; c->opts && c->opts[i] && k < 31; i++)
        extra[k++] = c->opts[i];
    extra[k] = NULL;
    long t0 = now_ms();
    int rc = e2e_run(out, sizeof out, tmo(60), root, csv, srv.base_url, extra);
    c->seconds = (double)(now_ms() - t0) / 1e3;
    if (c->may_stop && rc == 2) {
        CHECKF(e2e_count_lines(csv) <= 1, "%s: exit 2 with rows written: %s", c->endpoint, out);
    } else {
        CHECKF(rc == (c->n_bad || c->want_all ? 1 : 0), "%s: exit %d: %s", c->endpoint, rc, out);
        check_rows(c, csv);
    }
    char url[200];
    snprintf(url, sizeof url, "%s/stats", srv.base_url);
    long status = 0;
    char *resp = NULL;
    http_request(url, NULL, NULL, 0, &status, &resp, NULL);
    cJSON *stats = resp ? cJSON_Parse(resp) : NULL;
    free(resp);
    mock_stop(&srv);
    tree_rm(base);
    return stats;
}

long batchy_stat(const cJSON *s, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, k);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

int batchy_singles(const cJSON *s)
{
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(s, "sizes");
    int ones = 0;
    for (const cJSON *e = sizes ? sizes->child : NULL; e; e = e->next)
        ones += e->valuedouble == 1;
    return ones;
}
