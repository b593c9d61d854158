/* ipc: see ipc.h. */
#include "drivers/ipc.h"
#include "common/mime.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fdio.h"

#define NO_STR 0xFFFFFFFFu

void ipc_buf_free(struct ipc_buf *b)
{
    if (!b)
        return;
    if (b->d)
        memset(b->d, 0, b->cap); /* a configuration frame holds header values */
    free(b->d);
    memset(b, 0, sizeof *b);
}

static int need(struct ipc_buf *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n <= b->cap)
        return 0;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n)
        c *= 2;
    unsigned char *d = realloc(b->d, c);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->d = d;
    b->cap = c;
    return 0;
}

static void put(struct ipc_buf *b, const void *p, size_t n)
{
    if (n == 0 || need(b, n))
        return; /* p may be NULL when n is 0 (an item with no request log yet) */
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void put_u32(struct ipc_buf *b, uint32_t v) { put(b, &v, 4); }

static void put_str(struct ipc_buf *b, const char *s, size_t n)
{
    if (!s) {
        put_u32(b, NO_STR);
        return;
    }
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

static int get(struct ipc_buf *b, void *p, size_t n)
{
    if (b->pos + n > b->len)
        return -1;
    memcpy(p, b->d + b->pos, n);
    b->pos += n;
    return 0;
}

static int get_u32(struct ipc_buf *b, uint32_t *v) { return get(b, v, 4); }

/* A NUL-terminated copy, or NULL for an absent string. -1 when malformed or out of memory. */
static int get_str(struct ipc_buf *b, char **out, size_t *len)
{
    uint32_t n;
    *out = NULL;
    if (get_u32(b, &n))
        return -1;
    if (n == NO_STR)
        return 0;
    if (b->pos + n > b->len || !(*out = malloc((size_t)n + 1)))
        return -1;
    memcpy(*out, b->d + b->pos, n);
    (*out)[n] = 0;
    b->pos += n;
    if (len)
        *len = n;
    return 0;
}

/* Starts a frame: room for the length, filled in by end_frame. */
static void begin_frame(struct ipc_buf *b)
{
    b->len = 0;
    b->oom = 0;
    put_u32(b, 0);
}

static int end_frame(struct ipc_buf *b)
{
    if (b->oom || b->len - 4 > IPC_MAX_FRAME)
        return -1;
    uint32_t total = (uint32_t)(b->len - 4);
    memcpy(b->d, &total, 4);
    return 0;
}

int ipc_read_frame(int fd, struct ipc_buf *b)
{
    uint32_t n;
    if (fd_read_all(fd, &n, 4) || n > IPC_MAX_FRAME)
        return -1;
    b->len = 0;
    b->pos = 0;
    b->oom = 0;
    if (need(b, n) || fd_read_all(fd, b->d, n))
        return -1;
    b->len = n;
    return 0;
}

int ipc_encode_item(struct ipc_buf *b, const struct item *it, int with_payload)
{
    begin_frame(b);
    put(b, &it->seq, 8);
    put(b, &it->t_start, sizeof it->t_start);
    uint32_t v[6] = {(uint32_t)it->status, it->requests, it->attempts, (uint32_t)it->rel_off, (uint32_t)it->n_stages,
                     (uint32_t)it->no_row};
    put(b, v, sizeof v);
    put_str(b, it->path, it->path_len);
    put_str(b, with_payload ? it->b64 : NULL, it->b64_len);
    put_str(b, with_payload ? (const char *)it->raw : NULL, it->raw_len);
    put_str(b, it->mime, it->mime ? strlen(it->mime) : 0);
    put_str(b, it->error, it->error ? strlen(it->error) : 0);
    for (int s = 0; s < it->n_stages; s++) {
        put(b, &it->state[s], 1);
        char *j = it->results[s] ? cJSON_PrintUnformatted(it->results[s]) : NULL;
        if (it->results[s] && !j)
            b->oom = 1;
        put_str(b, j, j ? strlen(j) : 0);
        free(j);
    }
    put_u32(b, (uint32_t)it->n_log);
    put(b, it->log, (size_t)it->n_log * sizeof *it->log);
    return end_frame(b);
}

struct item *ipc_decode_item(struct ipc_buf *b, int n_stages)
{
    b->pos = 0;
    uint64_t seq;
    double t0;
    uint32_t v[6];
    char *path = NULL;
    size_t path_len = 0;
    if (get(b, &seq, 8) || get(b, &t0, sizeof t0) || get(b, v, sizeof v) || v[4] != (uint32_t)n_stages ||
        get_str(b, &path, &path_len) || !path || v[3] > path_len) {
        free(path);
        return NULL;
    }
    struct item *it = item_new(path, path_len, v[3], (int)v[4], seq);
    free(path);
    if (!it)
        return NULL;
    it->t_start = t0;
    it->status = (int)v[0];
    it->requests = v[1];
    it->attempts = v[2];
    it->no_row = v[5] != 0;
    char *raw = NULL, *mime = NULL;
    size_t raw_len = 0;
    if (get_str(b, &it->b64, &it->b64_len) || get_str(b, &raw, &raw_len) || get_str(b, &mime, NULL) ||
        get_str(b, &it->error, NULL)) {
        free(raw);
        free(mime);
        goto bad;
    }
    it->raw = (unsigned char *)raw;
    it->raw_len = raw_len;
    it->mime = mime ? mime_canonical(mime) : NULL; /* the same static string as the other end's */
    free(mime);
    for (int s = 0; s < it->n_stages; s++) {
        char *j;
        if (get(b, &it->state[s], 1) || get_str(b, &j, NULL))
            goto bad;
        if (j) {
            /* The exact text the other end had (a result is kept as the server sent it). */
            it->results[s] = cJSON_CreateRaw(j);
            free(j);
            if (!it->results[s])
                goto bad;
        }
    }
    uint32_t nlog;
    if (get_u32(b, &nlog) || nlog > 1u << 20)
        goto bad;
    for (uint32_t i = 0; i < nlog; i++) {
        struct req_log l;
        if (get(b, &l, sizeof l))
            goto bad;
        item_log_request(it, l.stage, l.us, l.attempts);
    }
    return it;
bad:
    item_free(it);
    return NULL;
}

/* ---- the configuration frame ---- */

enum ftype { F_STR, F_INT, F_LONG, F_SIZE, F_U64, F_DOUBLE };

/* Every field of struct config a worker process may read. A field left out reaches workers as
 * zero, so a new option that workers use must be added here (the processes tests compare every
 * strategy's rows with serial's, so a forgotten one shows). */
static const struct {
    const char *name;
    enum ftype t;
    size_t off;
} FIELDS[] = {
#define F(field, type) {#field, type, offsetof(struct config, field)}
    F(dir, F_STR), F(out, F_STR), F(server, F_STR), F(config_file, F_STR), F(cacert, F_STR),
    F(load, F_INT), F(query, F_INT), F(workers, F_INT), F(concurrency, F_INT), F(loops, F_INT),
    F(queue_size, F_SIZE), F(timeout_ms, F_LONG), F(connect_timeout_ms, F_LONG), F(retries, F_INT),
    F(backoff_ms, F_LONG), F(backoff_max_ms, F_LONG), F(max_rps, F_DOUBLE), F(max_image_bytes, F_U64),
    F(max_answer_bytes, F_LONG), F(max_memory, F_U64),
    F(encoder, F_INT), F(insecure, F_INT), F(quiet, F_INT), F(drain_timeout_ms, F_LONG),
    F(outage_timeout_s, F_LONG),
#undef F
};

int ipc_encode_config(struct ipc_buf *b, const struct config *cfg, unsigned jobs, int shared_fd,
                      int ratelimit_fd)
{
    const struct pipeline *p = cfg->pipeline;
    cJSON *root = cJSON_CreateObject(), *c = cJSON_AddObjectToObject(root, "config");
    int bad = !root || !c;
    for (size_t i = 0; !bad && i < sizeof FIELDS / sizeof *FIELDS; i++) {
        const char *at = (const char *)cfg + FIELDS[i].off;
        cJSON *v = NULL;
        char num[32];
        switch (FIELDS[i].t) {
        case F_STR: {
            const char *s = *(const char *const *)at;
            v = s ? cJSON_CreateString(s) : cJSON_CreateNull();
            break;
        }
        case F_INT: v = cJSON_CreateNumber(*(const int *)at); break;
        case F_LONG: v = cJSON_CreateNumber((double)*(const long *)at); break;
        case F_DOUBLE: v = cJSON_CreateNumber(*(const double *)at); break;
        case F_SIZE: /* as text: a double would round values past 2^53 */
            snprintf(num, sizeof num, "%zu", *(const size_t *)at);
            v = cJSON_CreateString(num);
            break;
        case F_U64:
            snprintf(num, sizeof num, "%llu", (unsigned long long)*(const uint64_t *)at);
            v = cJSON_CreateString(num);
            break;
        }
        bad = !v || !cJSON_AddItemToObject(c, FIELDS[i].name, v);
    }
    cJSON *pj = bad ? NULL : cJSON_AddObjectToObject(root, "pipeline");
    cJSON *stages = pj ? cJSON_AddArrayToObject(pj, "stages") : NULL;
    bad = bad || !stages || !cJSON_AddStringToObject(pj, "text", p->text) ||
          !cJSON_AddStringToObject(pj, "source", p->source) || !cJSON_AddNumberToObject(root, "jobs", jobs) ||
          !cJSON_AddNumberToObject(root, "shared_fd", shared_fd) ||
          !cJSON_AddNumberToObject(root, "ratelimit_fd", ratelimit_fd);
    /* --header's templates, for a worker to read ${file:PATH} values again after a 401 */
    cJSON *cli = bad ? NULL : cJSON_AddArrayToObject(pj, "cli_headers");
    bad = bad || !cli;
    for (int i = 0; !bad && i < p->n_cli_headers; i++) {
        cJSON *line = cJSON_CreateString(p->cli_headers[i]);
        bad = !line || !cJSON_AddItemToArray(cli, line);
    }
    for (int i = 0; !bad && i < p->n; i++) {
        cJSON *s = cJSON_CreateObject(), *h = cJSON_CreateArray();
        bad = !s || !h || !cJSON_AddItemToArray(stages, s) || !cJSON_AddItemToObject(s, "headers", h) ||
              !cJSON_AddStringToObject(s, "url", p->stages[i].full_url) ||
              !cJSON_AddStringToObject(s, "shown_url", p->stages[i].shown_url);
        cJSON *reps = bad ? NULL : cJSON_AddArrayToObject(s, "replicas");
        bad = bad || !reps;
        for (int k = 1; !bad && k < p->stages[i].n_urls; k++) {
            cJSON *pair = cJSON_CreateArray();
            bad = !pair || !cJSON_AddItemToArray(reps, pair) ||
                  !cJSON_AddItemToArray(pair, cJSON_CreateString(p->stages[i].rep_full[k])) ||
                  !cJSON_AddItemToArray(pair, cJSON_CreateString(p->stages[i].rep_shown[k]));
        }
        for (const struct curl_slist *l = pipeline_headers(&p->stages[i], NULL); !bad && l; l = l->next) {
            cJSON *line = cJSON_CreateString(l->data);
            bad = !line || !cJSON_AddItemToArray(h, line);
        }
    }
    char *text = bad ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return -1;
    size_t n = strlen(text);
    begin_frame(b);
    put(b, text, n);
    memset(text, 0, n); /* it holds header values */
    free(text);
    return end_frame(b);
}

static int num_field(const cJSON *o, const char *name, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(x))
        return -1;
    *v = x->valuedouble;
    return 0;
}

int ipc_decode_config(struct ipc_buf *b, struct ipc_worker_config *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->shared_fd = w->ratelimit_fd = -1;
    cJSON *root = cJSON_ParseWithLength((const char *)b->d, b->len);
    w->storage = root;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(root, "pipeline");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(pj, "text");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(pj, "source");
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(pj, "stages");
    double jobs, sfd, rfd;
    if (!cJSON_IsObject(c) || !cJSON_IsString(text) || !cJSON_IsString(source) || !cJSON_IsArray(stages) ||
        num_field(root, "jobs", &jobs) || num_field(root, "shared_fd", &sfd) ||
        num_field(root, "ratelimit_fd", &rfd)) {
        snprintf(err, errlen, "malformed configuration frame from the parent");
        return -1;
    }
    w->jobs = (unsigned)jobs;
    w->shared_fd = (int)sfd;
    w->ratelimit_fd = (int)rfd;
    for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, FIELDS[i].name);
        char *at = (char *)&w->cfg + FIELDS[i].off;
        int ok = FIELDS[i].t == F_STR ? cJSON_IsString(v) || cJSON_IsNull(v)
                 : FIELDS[i].t == F_SIZE || FIELDS[i].t == F_U64 ? cJSON_IsString(v)
                                                                 : cJSON_IsNumber(v);
        if (!ok) {
            snprintf(err, errlen, "configuration frame: field %s is missing", FIELDS[i].name);
            return -1;
        }
        switch (FIELDS[i].t) {
        case F_STR: *(const char **)at = cJSON_IsString(v) ? v->valuestring : NULL; break;
        case F_INT: *(int *)at = (int)v->valuedouble; break;
        case F_LONG: *(long *)at = (long)v->valuedouble; break;
        case F_DOUBLE: *(double *)at = v->valuedouble; break;
        case F_SIZE: *(size_t *)at = (size_t)strtoull(v->valuestring, NULL, 10); break;
        case F_U64: *(uint64_t *)at = (uint64_t)strtoull(v->valuestring, NULL, 10); break;
        }
    }
    struct pipeline *p;
    if (pipeline_parse(text->valuestring, strlen(text->valuestring), source->valuestring, &p, err, errlen))
        return -1;
    w->cfg.pipeline = p;
    if (cJSON_GetArraySize(stages) != p->n) {
        snprintf(err, errlen, "configuration frame: %d resolved stages for a pipeline of %d",
                 cJSON_GetArraySize(stages), p->n);
        return -1;
    }
    const cJSON *cli = cJSON_GetObjectItemCaseSensitive(pj, "cli_headers");
    for (const cJSON *l = cli ? cli->child : NULL; l; l = l->next)
        if (!cJSON_IsString(l) || pipeline_add_header(p, l->valuestring, err, errlen))
            return -1;
    int i = 0;
    for (const cJSON *s = stages->child; s; s = s->next, i++) {
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(s, "url");
        const cJSON *shown = cJSON_GetObjectItemCaseSensitive(s, "shown_url");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(s, "headers");
        int n = cJSON_GetArraySize(h), k = 0;
        const char **lines = calloc((size_t)n + 1, sizeof *lines);
        if (!cJSON_IsString(url) || !cJSON_IsString(shown) || !cJSON_IsArray(h) || !lines) {
            free(lines);
            snprintf(err, errlen, "configuration frame: malformed stage %d", i + 1);
            return -1;
        }
        for (const cJSON *l = h->child; l; l = l->next)
            if (cJSON_IsString(l))
                lines[k++] = l->valuestring;
        int rc = k == n ? pipeline_adopt_resolved(p, i, url->valuestring, shown->valuestring, lines, n) : -1;
        const cJSON *reps = cJSON_GetObjectItemCaseSensitive(s, "replicas");
        int r = 1;
        for (const cJSON *pair = reps ? reps->child : NULL; pair && !rc; pair = pair->next, r++) {
            const cJSON *f = cJSON_GetArrayItem(pair, 0), *sh = cJSON_GetArrayItem(pair, 1);
            rc = cJSON_IsString(f) && cJSON_IsString(sh) ? pipeline_adopt_replica(p, i, r, f->valuestring, sh->valuestring)
                                                         : -1;
        }
        if (!rc && r != (p->stages[i].n_urls > 1 ? p->stages[i].n_urls : 1))
            rc = -1;
        free(lines);
        if (rc) {
            snprintf(err, errlen, "configuration frame: stage %d cannot be set up", i + 1);
            return -1;
        }
    }
    return 0;
}

/* Wipes the strings of a cJSON tree (header values) before it is freed. */
static void wipe(cJSON *v)
{
    for (; v; v = v->next) {
        if (cJSON_IsString(v) && v->valuestring)
            memset(v->valuestring, 0, strlen(v->valuestring));
        wipe(v->child);
    }
}

void ipc_worker_config_free(struct ipc_worker_config *w)
{
    if (!w)
        return;
    pipeline_free(w->cfg.pipeline);
    wipe(w->storage);
    cJSON_Delete(w->storage);
    memset(w, 0, sizeof *w);
}
