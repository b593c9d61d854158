/* ipc: see ipc.h. */
#include "drivers/ipc.h"
#include "options.h"
#include "common/mime.h"
#include "common/secrets.h"

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

void ipc_buf_trim(struct ipc_buf *b)
{
    if (b->len || b->cap <= IPC_BUF_KEEP)
        return;
    free(b->d); /* (a configuration frame, which holds header values, is never this large) */
    b->d = NULL;
    b->cap = b->pos = 0;
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

/* The file's header and the prepared copies (item.h): their sizes and frames, and with the
 * payload their bytes. */
static void put_copies(struct ipc_buf *b, const struct item *it, int with_payload)
{
    int32_t v[4] = {it->stored_w, it->stored_h, it->orientation, it->n_copies};
    put(b, v, sizeof v);
    for (int k = 0; k < it->n_copies; k++) {
        const struct item_copy *c = &it->copies[k];
        put_str(b, with_payload ? (const char *)c->raw : NULL, c->raw_len);
        put_str(b, with_payload ? c->b64 : NULL, c->b64_len);
        put_str(b, c->mime, c->mime ? strlen(c->mime) : 0);
        int32_t wh[2] = {c->width, c->height};
        put(b, wh, sizeof wh);
        put(b, &c->frame, sizeof c->frame);
    }
}

static int get_copies(struct ipc_buf *b, struct item *it)
{
    int32_t v[4];
    if (get(b, v, sizeof v) || v[3] < 0 || v[3] > 64)
        return -1;
    it->stored_w = v[0];
    it->stored_h = v[1];
    it->orientation = v[2];
    if (v[3] && !(it->copies = calloc((size_t)v[3], sizeof *it->copies)))
        return -1;
    it->n_copies = v[3];
    for (int k = 0; k < it->n_copies; k++) {
        struct item_copy *c = &it->copies[k];
        char *raw = NULL, *mime = NULL;
        int32_t wh[2];
        int bad = get_str(b, &raw, &c->raw_len) || get_str(b, &c->b64, &c->b64_len) || get_str(b, &mime, NULL) ||
                  get(b, wh, sizeof wh) || get(b, &c->frame, sizeof c->frame);
        c->raw = (unsigned char *)raw;
        c->mime = mime ? mime_canonical(mime) : NULL;
        free(mime);
        if (bad)
            return -1;
        c->width = wh[0];
        c->height = wh[1];
    }
    return 0;
}

int ipc_encode_item(struct ipc_buf *b, const struct item *it, int with_payload)
{
    begin_frame(b);
    put(b, &it->seq, 8);
    put(b, &it->t_start, sizeof it->t_start);
    uint32_t v[8] = {(uint32_t)it->status, it->requests, it->attempts, (uint32_t)it->rel_off, (uint32_t)it->n_stages,
                     (uint32_t)it->no_row, (uint32_t)it->has_digest, (uint32_t)it->fail_final};
    put(b, v, sizeof v);
    put(b, it->digest, sizeof it->digest); /* --cache: the image's digest, taken where it was read */
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
        j = it->cells[s] ? cJSON_PrintUnformatted(it->cells[s]) : NULL; /* its "column" */
        if (it->cells[s] && !j)
            b->oom = 1;
        put_str(b, j, j ? strlen(j) : 0);
        free(j);
    }
    put_u32(b, (uint32_t)it->n_log);
    put(b, it->log, (size_t)it->n_log * sizeof *it->log);
    put_copies(b, it, with_payload);
    /* The payload's share of --max-memory goes with it (budget.h: the receiver counts it). */
    uint64_t ch[2] = {with_payload ? it->charged : 0, with_payload ? it->cut_charged : 0};
    put(b, ch, sizeof ch);
    for (int k = 0; k < it->n_copies; k++) {
        uint64_t c = with_payload ? it->copies[k].charged : 0;
        put(b, &c, sizeof c);
    }
    return end_frame(b);
}

struct item *ipc_decode_item(struct ipc_buf *b, int n_stages)
{
    b->pos = 0;
    uint64_t seq;
    double t0;
    uint32_t v[8];
    unsigned char digest[HASH_BYTES];
    char *path = NULL;
    size_t path_len = 0;
    if (get(b, &seq, 8) || get(b, &t0, sizeof t0) || get(b, v, sizeof v) || v[4] != (uint32_t)n_stages ||
        get(b, digest, sizeof digest) || get_str(b, &path, &path_len) || !path || v[3] > path_len) {
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
    it->has_digest = v[6] != 0;
    it->fail_final = v[7] != 0;
    memcpy(it->digest, digest, sizeof digest);
    char *raw = NULL, *mime = NULL;
    size_t raw_len = 0;
    if (get_str(b, &it->b64, &it->b64_len) || get_str(b, &raw, &raw_len) || get_str(b, &mime, NULL) ||
        get_str(b, &it->error, NULL)) {
        free(raw);
        free(mime);
        goto bad;
    }
    if (it->error) { /* a worker's reason, scrubbed again with this process's secrets */
        char clean[1024];
        secrets_scrub_to(it->error, strlen(it->error), clean, sizeof clean);
        free(it->error);
        it->error = strdup(clean);
    }
    it->raw = (unsigned char *)raw;
    it->raw_len = raw_len;
    it->mime = mime ? mime_canonical(mime) : NULL; /* the same static string as the other end's */
    free(mime);
    for (int s = 0; s < it->n_stages; s++) {
        char *j = NULL, *c = NULL;
        if (get(b, &it->state[s], 1) || get_str(b, &j, NULL) || get_str(b, &c, NULL)) {
            free(j);
            goto bad;
        }
        /* The exact text the other end had (a result is kept as the server sent it). */
        it->results[s] = j ? cJSON_CreateRaw(j) : NULL;
        it->cells[s] = c ? cJSON_CreateRaw(c) : NULL;
        int lost = (j && !it->results[s]) || (c && !it->cells[s]);
        free(j);
        free(c);
        if (lost)
            goto bad;
        if (it->results[s])
            item_charge_result(it, it->results[s]); /* this process's copy */
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
    if (get_copies(b, it))
        goto bad;
    uint64_t ch[2 + 64]; /* (get_copies takes 64 at most) */
    if (get(b, ch, 2 * sizeof *ch) || get(b, ch + 2, (size_t)it->n_copies * sizeof *ch))
        goto bad;
    /* Set only now: an item that could not be read holds no share of the budget. */
    it->charged = ch[0];
    it->cut_charged = ch[1];
    for (int k = 0; k < it->n_copies; k++)
        it->copies[k].charged = ch[2 + k];
    return it;
bad:
    item_free(it);
    return NULL;
}

/* ---- the configuration frame ---- */

/* Wipes the strings of a cJSON tree (header values) before it is freed. */
static void wipe(cJSON *v)
{
    for (; v; v = v->next) {
        if (cJSON_IsString(v) && v->valuestring)
            memset(v->valuestring, 0, strlen(v->valuestring));
        wipe(v->child);
    }
}

/* The options a worker is sent, as the command line config.h writes back ("args"), and the folder. */
static int put_config(cJSON *root, const struct config *cfg)
{
    struct config_argv *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    config_argv_reset(a);
    cJSON *args = cJSON_AddArrayToObject(root, "args");
    int bad = !args || config_args(cfg, NULL, CONFIG_FOR_WORKER, a) ||
              !(cfg->dir ? cJSON_AddStringToObject(root, "dir", cfg->dir) : cJSON_AddNullToObject(root, "dir"));
    for (int i = 0; !bad && i < a->argc; i++) {
        cJSON *w = cJSON_CreateString(a->argv[i]);
        bad = !w || !cJSON_AddItemToArray(args, w);
    }
    free(a);
    return bad ? -1 : 0;
}

/* A stage as the parent resolved it: its URL, its replicas' and its header lines. */
static int put_stage(cJSON *stages, const struct stage *st)
{
    cJSON *s = cJSON_CreateObject();
    int bad = !s || !cJSON_AddItemToArray(stages, s);
    cJSON *h = bad ? NULL : cJSON_AddArrayToObject(s, "headers");
    cJSON *reps = h ? cJSON_AddArrayToObject(s, "replicas") : NULL;
    bad = bad || !reps || !cJSON_AddStringToObject(s, "url", st->full_url) ||
          !cJSON_AddStringToObject(s, "shown_url", st->shown_url);
    for (int k = 1; !bad && k < st->n_urls; k++) {
        cJSON *pair = cJSON_CreateArray();
        bad = !pair || !cJSON_AddItemToArray(reps, pair) ||
              !cJSON_AddItemToArray(pair, cJSON_CreateString(st->rep_full[k])) ||
              !cJSON_AddItemToArray(pair, cJSON_CreateString(st->rep_shown[k]));
    }
    for (const struct curl_slist *l = pipeline_headers(st, NULL); !bad && l; l = l->next) {
        cJSON *line = cJSON_CreateString(l->data);
        bad = !line || !cJSON_AddItemToArray(h, line);
    }
    return bad ? -1 : 0;
}

/* The pipeline as the parent parsed and resolved it. */
static int put_pipeline(cJSON *root, const struct pipeline *p)
{
    cJSON *pj = cJSON_AddObjectToObject(root, "pipeline");
    cJSON *stages = pj ? cJSON_AddArrayToObject(pj, "stages") : NULL;
    /* --header's templates, for a worker to read ${file:PATH} values again after a 401 */
    cJSON *cli = stages ? cJSON_AddArrayToObject(pj, "cli_headers") : NULL;
    int bad = !cli || !cJSON_AddStringToObject(pj, "text", p->text) || !cJSON_AddStringToObject(pj, "source", p->source);
    for (int i = 0; !bad && i < p->n_cli_headers; i++) {
        cJSON *line = cJSON_CreateString(p->cli_headers[i]);
        bad = !line || !cJSON_AddItemToArray(cli, line);
    }
    for (int i = 0; !bad && i < p->n; i++)
        bad = put_stage(stages, &p->stages[i]);
    return bad ? -1 : 0;
}

static int put_secret(void *arg, const char *v, size_t len)
{
    char *z = strndup(v, len);
    cJSON *s = z ? cJSON_CreateString(z) : NULL;
    if (z)
        memset(z, 0, len);
    free(z);
    return !s || !cJSON_AddItemToArray(arg, s);
}

/* The secrets this process holds (common/secrets.h), so that the worker scrubs them too. */
static int put_secrets(cJSON *root)
{
    cJSON *a = cJSON_AddArrayToObject(root, "secrets");
    return !a || secrets_each(put_secret, a) ? -1 : 0;
}

int ipc_encode_config(struct ipc_buf *b, const struct config *cfg, unsigned jobs, int shared_fd,
                      int ratelimit_fd)
{
    cJSON *root = cJSON_CreateObject();
    int bad = !root || put_config(root, cfg) || put_pipeline(root, cfg->pipeline) || put_secrets(root) ||
              !cJSON_AddNumberToObject(root, "jobs", jobs) || !cJSON_AddNumberToObject(root, "shared_fd", shared_fd) ||
              !cJSON_AddNumberToObject(root, "ratelimit_fd", ratelimit_fd);
    char *text = bad ? NULL : cJSON_PrintUnformatted(root);
    wipe(root);
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

/* The worker's options: the defaults, then "args" read by the parser that read the parent's
 * command line (config.h), without looking again at what is outside the process. */
static int get_config(const cJSON *root, struct config *cfg, char *err, size_t errlen)
{
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(root, "args");
    const cJSON *dir = cJSON_GetObjectItemCaseSensitive(root, "dir");
    int n = cJSON_GetArraySize(args), k = 0;
    const char **words = calloc((size_t)n + 1, sizeof *words);
    if (!cJSON_IsArray(args) || !(cJSON_IsString(dir) || cJSON_IsNull(dir)) || !words) {
        free(words);
        snprintf(err, errlen, "configuration frame: malformed options");
        return -1;
    }
    for (const cJSON *w = args->child; w; w = w->next)
        if (cJSON_IsString(w))
            words[k++] = w->valuestring;
    config_defaults(cfg, NULL);
    cfg->dir = cJSON_IsString(dir) ? dir->valuestring : NULL;
    struct config_parse ps = {.cfg = cfg, .from_parent = 1};
    char why[512] = "an option is not a string";
    int rc = k == n ? config_apply_args(words, n, &ps, why, sizeof why) : -1;
    free(words);
    if (rc)
        snprintf(err, errlen, "configuration frame: %s", why);
    return rc;
}

/* Stage i as the parent resolved it (see put_stage). 0 or -1. */
static int get_stage(struct pipeline *p, int i, const cJSON *s)
{
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(s, "url");
    const cJSON *shown = cJSON_GetObjectItemCaseSensitive(s, "shown_url");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(s, "headers");
    int n = cJSON_GetArraySize(h), k = 0;
    const char **lines = calloc((size_t)n + 1, sizeof *lines);
    if (!cJSON_IsString(url) || !cJSON_IsString(shown) || !cJSON_IsArray(h) || !lines) {
        free(lines);
        return -1;
    }
    for (const cJSON *l = h->child; l; l = l->next)
        if (cJSON_IsString(l))
            lines[k++] = l->valuestring;
    int rc = k == n ? pipeline_adopt_resolved(p, i, url->valuestring, shown->valuestring, lines, n) : -1;
    free(lines);
    const cJSON *reps = cJSON_GetObjectItemCaseSensitive(s, "replicas");
    int r = 1;
    for (const cJSON *pair = reps ? reps->child : NULL; pair && !rc; pair = pair->next, r++) {
        const cJSON *f = cJSON_GetArrayItem(pair, 0), *sh = cJSON_GetArrayItem(pair, 1);
        rc = cJSON_IsString(f) && cJSON_IsString(sh) ? pipeline_adopt_replica(p, i, r, f->valuestring, sh->valuestring)
                                                     : -1;
    }
    if (!rc && r != (p->stages[i].n_urls > 1 ? p->stages[i].n_urls : 1))
        rc = -1;
    return rc;
}

/* The pipeline: parsed from the parent's text, then its stages set up as the parent resolved them. */
static int get_pipeline(const cJSON *root, struct config *cfg, char *err, size_t errlen)
{
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(root, "pipeline");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(pj, "text");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(pj, "source");
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(pj, "stages");
    if (!cJSON_IsString(text) || !cJSON_IsString(source) || !cJSON_IsArray(stages)) {
        snprintf(err, errlen, "malformed configuration frame from the parent");
        return -1;
    }
    struct pipeline *p;
    if (pipeline_parse(text->valuestring, strlen(text->valuestring), source->valuestring, &p, err, errlen))
        return -1;
    cfg->pipeline = p;
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
    for (const cJSON *s = stages->child; s; s = s->next, i++)
        if (get_stage(p, i, s)) {
            snprintf(err, errlen, "configuration frame: stage %d cannot be set up", i + 1);
            return -1;
        }
    return 0;
}

int ipc_decode_config(struct ipc_buf *b, struct ipc_worker_config *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->shared_fd = w->ratelimit_fd = -1;
    cJSON *root = cJSON_ParseWithLength((const char *)b->d, b->len);
    w->storage = root;
    double jobs, sfd, rfd;
    if (!cJSON_IsObject(root) || num_field(root, "jobs", &jobs) || num_field(root, "shared_fd", &sfd) ||
        num_field(root, "ratelimit_fd", &rfd)) {
        snprintf(err, errlen, "malformed configuration frame from the parent");
        return -1;
    }
    const cJSON *secrets = cJSON_GetObjectItemCaseSensitive(root, "secrets");
    for (const cJSON *v = secrets ? secrets->child : NULL; v; v = v->next)
        if (cJSON_IsString(v))
            secrets_add(v->valuestring, strlen(v->valuestring));
    w->jobs = (unsigned)jobs;
    w->shared_fd = (int)sfd;
    w->ratelimit_fd = (int)rfd;
    return get_config(root, &w->cfg, err, errlen) || get_pipeline(root, &w->cfg, err, errlen) ? -1 : 0;
}

void ipc_worker_config_free(struct ipc_worker_config *w)
{
    if (!w)
        return;
    pipeline_free(w->cfg.pipeline);
    free(w->cfg.ext_storage);
    wipe(w->storage);
    cJSON_Delete(w->storage);
    memset(w, 0, sizeof *w);
}
