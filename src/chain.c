/* chain: see chain.h. */
#include "chain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int chain_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v) || cJSON_IsInvalid(v))
        return 0;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0;
    if (cJSON_IsString(v))
        return v->valuestring && v->valuestring[0];
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child != NULL;
    return 1;
}

/* Appends s to a growing buffer. */
static void put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 64;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

static int needs_escape(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            return 1;
    }
    return 0;
}

/* im is sent as a JSON string; our own base64 (trusted) never needs escaping, so only strings
 * taken from a server's answer are scanned. */
static struct chain_req *new_req(const struct pipeline *p, struct item *it, int s, int index,
                                 const char *im, size_t n, int trusted)
{
    const struct stage *st = &p->stages[s];
    struct chain_req *r = calloc(1, sizeof *r);
    r->it = it;
    r->stage = s;
    r->index = index;
    if (!trusted && needs_escape(im, n)) {
        /* Only for a server that hands back odd strings: base64 never needs it. */
        cJSON *tmp = cJSON_CreateString(im);
        char *q = cJSON_PrintUnformatted(tmp);
        cJSON_Delete(tmp);
        size_t ql = strlen(q);
        memmove(q, q + 1, ql - 2);
        q[ql - 2] = 0;
        r->im_owned = q;
        r->im = q;
        r->im_len = ql - 2;
    } else {
        r->im = im;
        r->im_len = n;
    }
    size_t len = 0, cap = 0;
    put(&r->tail, &len, &cap, "\"", 1);
    for (int f = 0; f < st->n_fields; f++) {
        const struct stage_field *fd = &st->fields[f];
        cJSON *key = cJSON_CreateString(fd->name);
        char *k = cJSON_PrintUnformatted(key);
        cJSON_Delete(key);
        put(&r->tail, &len, &cap, ",", 1);
        put(&r->tail, &len, &cap, k, strlen(k));
        put(&r->tail, &len, &cap, ":", 1);
        free(k);
        if (fd->result_of >= 0) {
            const cJSON *v = it->results[fd->result_of];
            char *txt = v ? cJSON_PrintUnformatted(v) : NULL;
            if (txt) {
                put(&r->tail, &len, &cap, txt, strlen(txt));
                free(txt);
            } else {
                put(&r->tail, &len, &cap, "null", 4);
            }
        } else {
            put(&r->tail, &len, &cap, fd->literal, strlen(fd->literal));
        }
    }
    put(&r->tail, &len, &cap, "}]", 2);
    r->tail_len = len;
    it->outstanding[s]++;
    it->in_flight++;
    return r;
}

/* Settles the stages that can be settled without a request, and starts the ones whose inputs are
 * ready. Returns the new requests. */
struct chain_req *chain_next(const struct pipeline *p, struct item *it)
{
    struct chain_req *head = NULL, **tail = &head;
    if (it->status == ITEM_FAILED)
        return NULL;
    int settled = 1;
    for (int s = 0; s < p->n; s++) {
        const struct stage *st = &p->stages[s];
        if (it->state[s] != ST_WAITING) {
            if (it->state[s] == ST_RUNNING)
                settled = 0;
            continue;
        }
        int ready = 1, skip = 0;
        for (int d = 0; d < s; d++) {
            if (!(st->dep_mask >> d & 1))
                continue;
            if (it->state[d] == ST_SKIPPED)
                skip = 1;
            else if (it->state[d] != ST_DONE)
                ready = 0;
            else if ((st->when_mask >> d & 1) && !chain_truthy(it->results[d]))
                skip = 1;
        }
        if (skip) {
            /* Stages are in dependency order, so later stages see this at once. */
            it->state[s] = ST_SKIPPED;
            continue;
        }
        if (!ready) {
            settled = 0;
            continue;
        }
        if (st->input == INPUT_IMAGE) {
            if (!it->b64) {
                item_fail(it, "%s: the image was not loaded", st->name);
                return head;
            }
            it->state[s] = ST_RUNNING;
            *tail = new_req(p, it, s, 0, it->b64, it->b64_len, 1);
            tail = &(*tail)->next;
            settled = 0;
            continue;
        }
        /* INPUT_EACH: one request per element of the source's array. */
        const struct stage *src = &p->stages[st->each_stage];
        const cJSON *arr = cJSON_IsObject(it->results[st->each_stage])
                               ? cJSON_GetObjectItemCaseSensitive(it->results[st->each_stage], st->each_array)
                               : NULL;
        if (!cJSON_IsArray(arr)) {
            item_fail(it, "%s: %s's result has no array \"%s\"", st->name, src->name, st->each_array);
            return head;
        }
        int n = cJSON_GetArraySize(arr), i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            const cJSON *f = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, st->each_field) : NULL;
            if (!cJSON_IsString(f)) {
                item_fail(it, "%s: element %d of %s's \"%s\" has no string \"%s\"", st->name, i,
                          src->name, st->each_array, st->each_field);
                return head;
            }
        }
        it->results[s] = cJSON_CreateArray();
        for (i = 0; i < n; i++)
            cJSON_AddItemToArray(it->results[s], cJSON_CreateNull());
        if (n == 0) {
            it->state[s] = ST_DONE; /* later stages, which may depend on it, come next */
            continue;
        }
        it->state[s] = ST_RUNNING;
        i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            const char *str = cJSON_GetObjectItemCaseSensitive(e, st->each_field)->valuestring;
            *tail = new_req(p, it, s, i, str, strlen(str), 0);
            tail = &(*tail)->next;
        }
        settled = 0;
    }
    if (settled && it->in_flight == 0 && it->status == ITEM_PENDING)
        it->status = ITEM_OK;
    return head;
}

int chain_finished(const struct item *it)
{
    return it->in_flight == 0 && it->status != ITEM_PENDING;
}

int chain_parse_answer(const char *body, size_t len, cJSON **result, char *err, size_t errlen)
{
    *result = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        snprintf(err, errlen, "the answer is not JSON");
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(err, errlen, "the answer is not a JSON object");
        return -1;
    }
    cJSON *r = cJSON_DetachItemFromObjectCaseSensitive(root, "result");
    cJSON_Delete(root);
    if (!r) {
        snprintf(err, errlen, "the answer has no \"result\"");
        return -1;
    }
    *result = r;
    return 0;
}

/* A short, printable excerpt of a body for error messages (never the whole of it). */
static void excerpt(const char *body, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 2 < outlen && i < 80; i++) {
        unsigned char c = (unsigned char)body[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
    }
    out[o] = 0;
}

enum chain_outcome chain_outcome(CURLcode cc, long status, const char *body, size_t len,
                                 const char *curl_err, cJSON **result, char *err, size_t errlen)
{
    *result = NULL;
    if (cc != CURLE_OK) {
        const char *why = curl_err && curl_err[0] ? curl_err : curl_easy_strerror(cc);
        snprintf(err, errlen, "%s", why);
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            return OUTCOME_RETRY;
        default:
            return OUTCOME_FAIL;
        }
    }
    if (status < 200 || status > 299) {
        char ex[96];
        excerpt(body, len, ex, sizeof ex);
        snprintf(err, errlen, "HTTP %ld%s%s", status, ex[0] ? ": " : "", ex);
        return (status >= 500 || status == 429 || status == 408) ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    char why[128];
    if (chain_parse_answer(body, len, result, why, sizeof why)) {
        char ex[96];
        excerpt(body, len, ex, sizeof ex);
        snprintf(err, errlen, "%s: %s", why, ex);
        return OUTCOME_RETRY;
    }
    return OUTCOME_OK;
}

void chain_req_free(struct chain_req *req)
{
    if (!req)
        return;
    free(req->tail);
    free(req->im_owned);
    free(req);
}

void chain_done(const struct pipeline *p, struct chain_req *req, cJSON *result, const char *err)
{
    struct item *it = req->it;
    int s = req->stage;
    const struct stage *st = &p->stages[s];
    it->in_flight--;
    it->outstanding[s]--;
    if (req->attempts > 0)
        it->requests++; /* one cancelled before it was sent is no request: retries = attempts - requests */
    it->attempts += (uint32_t)req->attempts;
    if (req->t_first > 0)
        item_log_request(it, s, (uint32_t)((now_s() - req->t_first) * 1e6), req->attempts);
    if (!result) {
        if (st->input == INPUT_EACH)
            item_fail(it, "%s[%d]: %s (after %d attempt%s)", st->name, req->index, err, req->attempts,
                      req->attempts == 1 ? "" : "s");
        else
            item_fail(it, "%s: %s (after %d attempt%s)", st->name, err, req->attempts,
                      req->attempts == 1 ? "" : "s");
        it->state[s] = ST_FAILED;
    } else if (it->status == ITEM_FAILED) {
        cJSON_Delete(result);
    } else {
        if (st->input == INPUT_EACH)
            cJSON_ReplaceItemInArray(it->results[s], req->index, result);
        else
            it->results[s] = result;
        if (it->outstanding[s] == 0)
            it->state[s] = ST_DONE;
    }
    chain_req_free(req);
}

size_t chain_req_body_len(const struct chain_req *req)
{
    return CHAIN_BODY_HEAD_LEN + req->im_len + req->tail_len;
}

size_t chain_req_read(struct chain_req *req, char *buf, size_t n)
{
    size_t done = 0;
    const size_t a = CHAIN_BODY_HEAD_LEN, b = a + req->im_len, c = b + req->tail_len;
    while (done < n && req->sent < c) {
        const char *src;
        size_t avail;
        if (req->sent < a) {
            src = &CHAIN_BODY_HEAD[req->sent];
            avail = a - req->sent;
        } else if (req->sent < b) {
            src = req->im + (req->sent - a);
            avail = b - req->sent;
        } else {
            src = req->tail + (req->sent - b);
            avail = c - req->sent;
        }
        if (avail > n - done)
            avail = n - done;
        memcpy(buf + done, src, avail);
        done += avail;
        req->sent += avail;
    }
    return done;
}
