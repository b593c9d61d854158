/* item: see item.h. */
#include "flow/item.h"
#include "flow/budget.h"
#include "common/secrets.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct item *item_new(const char *path, size_t path_len, size_t rel_off, int n_stages, uint64_t seq)
{
    struct item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->path = malloc(path_len + 1);
    it->results = calloc((size_t)n_stages + 1, sizeof *it->results);
    it->cells = calloc((size_t)n_stages + 1, sizeof *it->cells);
    it->state = calloc((size_t)n_stages + 1, 1);
    it->outstanding = calloc((size_t)n_stages + 1, sizeof *it->outstanding);
    if (!it->path || !it->results || !it->cells || !it->state || !it->outstanding) {
        item_free(it);
        return NULL;
    }
    memcpy(it->path, path, path_len);
    it->path[path_len] = 0;
    it->path_len = path_len;
    it->rel_off = rel_off;
    it->n_stages = n_stages;
    it->seq = seq;
    it->t_start = now_s();
    return it;
}

/* fmt's text into buf (len bytes): made whole, scrubbed of the run's secrets (common/secrets.h),
 * then cut, so that no cut can leave a secret's head behind. -1 when the whole text could not be
 * had (out of memory): buf is then empty. */
static int scrubbed(char *buf, size_t len, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *whole = n >= 0 ? malloc((size_t)n + 1) : NULL;
    buf[0] = 0;
    if (whole) {
        vsnprintf(whole, (size_t)n + 1, fmt, again);
        secrets_scrub_to(whole, (size_t)n, buf, len);
        free(whole);
    }
    va_end(again);
    return whole ? 0 : -1;
}

static void fail_with(struct item *it, int final, const char *fmt, va_list ap)
{
    if (it->status == ITEM_FAILED)
        return;
    char buf[1024];
    int kept = scrubbed(buf, sizeof buf, fmt, ap) == 0; /* every failed row's reason passes here */
    it->status = ITEM_FAILED;
    it->fail_final = final;
    free(it->error);
    it->error = kept ? strdup(buf) : NULL; /* NULL: the row says its reason could not be kept */
}

void item_fail(struct item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_with(it, 0, fmt, ap);
    va_end(ap);
}

void item_fail_final(struct item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_with(it, 1, fmt, ap);
    va_end(ap);
}

int item_stage_fail(struct item *it, int s, int index, int final, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int kept = scrubbed(buf, sizeof buf, fmt, ap) == 0;
    va_end(ap);
    if (!kept) {
        item_fail(it, "out of memory (the reason could not be kept)");
        return -1;
    }
    if (!it->fails && !(it->fails = calloc((size_t)it->n_stages, sizeof *it->fails))) {
        item_fail(it, "%s", buf);
        return -1;
    }
    struct stage_fail *f = &it->fails[s];
    if (f->why && f->index <= index)
        return 0;
    char *why = strdup(buf);
    if (!why) {
        item_fail(it, "%s", buf);
        return -1;
    }
    free(f->why);
    *f = (struct stage_fail){why, index, final};
    return 0;
}

int item_settle_fails(struct item *it)
{
    size_t len = 0;
    int any = 0, final = 0;
    for (int s = 0; it->fails && s < it->n_stages; s++)
        if (it->fails[s].why) {
            len += strlen(it->fails[s].why) + 2;
            final |= it->fails[s].final;
            any = 1;
        }
    if (!any)
        return 0;
    char *all = malloc(len + 1);
    if (!all) {
        item_fail(it, "out of memory (the reason could not be kept)");
        return 1;
    }
    all[0] = 0;
    for (int s = 0; s < it->n_stages; s++)
        if (it->fails[s].why)
            strcat(strcat(all, all[0] ? "; " : ""), it->fails[s].why);
    free(it->error);
    it->error = all;
    it->status = ITEM_FAILED;
    it->fail_final = final;
    return 1;
}

void item_drop_copy(struct item *it, int k)
{
    struct item_copy *c = &it->copies[k];
    free(c->raw);
    free(c->b64);
    c->raw = NULL;
    c->b64 = NULL;
    c->raw_len = c->b64_len = 0;
    if (c->charged) {
        budget_give(c->charged);
        c->charged = 0;
    }
}

void item_drop_cut_charge(struct item *it)
{
    if (it->cut_charged) {
        budget_give(it->cut_charged);
        it->cut_charged = 0;
    }
}

void item_drop_payload(struct item *it)
{
    item_drop_original(it);
    for (int k = 0; k < it->n_copies; k++)
        item_drop_copy(it, k);
    item_drop_cut_charge(it);
}

void item_drop_original(struct item *it)
{
    free(it->b64 ? it->b64 - it->b64_slack : NULL);
    it->b64 = NULL;
    it->b64_len = 0;
    it->b64_slack = 0;
    free(it->raw);
    it->raw = NULL;
    it->raw_len = 0;
    if (it->charged) {
        budget_give(it->charged);
        it->charged = 0;
    }
}

uint64_t item_charge(const struct item *it)
{
    uint64_t n = it->charged + it->cut_charged;
    for (int k = 0; k < it->n_copies; k++)
        n += it->copies[k].charged;
    return n;
}

void item_disown_charge(struct item *it)
{
    it->charged = it->cut_charged = 0;
    for (int k = 0; k < it->n_copies; k++)
        it->copies[k].charged = 0;
}

/* The bytes of a result's text: a raw or string value's, an array's elements'. */
static uint64_t result_bytes(const cJSON *r)
{
    if (!r)
        return 0;
    if ((cJSON_IsRaw(r) || cJSON_IsString(r)) && r->valuestring)
        return strlen(r->valuestring);
    uint64_t n = 0;
    for (const cJSON *c = r->child; c; c = c->next)
        n += result_bytes(c);
    return n;
}

void item_charge_result(struct item *it, const cJSON *result)
{
    uint64_t n = result_bytes(result);
    if (n <= BUDGET_SMALL)
        return;
    budget_force(n);
    it->results_charged += n;
}

void item_log_request(struct item *it, int stage, uint32_t us, int attempts)
{
    if (it->n_log == it->cap_log) {
        int cap = it->cap_log ? it->cap_log * 2 : 8;
        struct req_log *n = realloc(it->log, (size_t)cap * sizeof *n);
        if (!n)
            return; /* a lost timing is not worth failing an image for */
        it->log = n;
        it->cap_log = cap;
    }
    it->log[it->n_log++] = (struct req_log){us, (uint16_t)stage, (uint16_t)(attempts > 65535 ? 65535 : attempts)};
}

void item_free(struct item *it)
{
    if (!it)
        return;
    item_drop_payload(it);
    budget_give(it->results_charged);
    free(it->path);
    free(it->error);
    for (int s = 0; it->fails && s < it->n_stages; s++)
        free(it->fails[s].why);
    free(it->fails);
    if (it->results)
        for (int i = 0; i < it->n_stages; i++)
            cJSON_Delete(it->results[i]);
    free(it->results);
    if (it->cells)
        for (int i = 0; i < it->n_stages; i++)
            cJSON_Delete(it->cells[i]);
    free(it->cells);
    free(it->state);
    free(it->outstanding);
    free(it->log);
    free(it->copies);
    free(it);
}
