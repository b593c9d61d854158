/* chain: see chain.h. */
#include "chain.h"

#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

int chain_truthy(const cJSON *v)
{
    if (cJSON_IsRaw(v)) {
        /* The exact bytes of a checked JSON value, read without parsing (a parse that ran out of
         * memory used to read as falsy and skip stages of an ok row). */
        const char *t = v->valuestring ? v->valuestring : "null";
        t += strspn(t, " \t\r\n");
        if (*t == '[' || *t == '{')
            return t[1 + strspn(t + 1, " \t\r\n")] != (*t == '[' ? ']' : '}');
        if (*t == '"')
            return t[1] != '"';
        if (*t == '-' || (*t >= '0' && *t <= '9'))
            return strtod(t, NULL) != 0;
        return *t == 't'; /* true; null and false are falsy */
    }
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

/* Appends s to a growing buffer. Returns 0, or -1 when out of memory (the buffer is then
 * freed and NULL). */
static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (!*buf && *cap)
        return -1; /* an earlier put failed */
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (*len + n + 1 > c)
            c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb) {
            free(*buf);
            *buf = NULL;
            return -1;
        }
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
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

/* A JSON string's text without its quotes (escaped as needed); NULL when out of memory. */
static char *json_escape(const char *s, size_t *len)
{
    cJSON *tmp = cJSON_CreateString(s);
    char *q = tmp ? cJSON_PrintUnformatted(tmp) : NULL;
    cJSON_Delete(tmp);
    if (!q)
        return NULL;
    size_t ql = strlen(q);
    memmove(q, q + 1, ql - 2);
    q[ql - 2] = 0;
    *len = ql - 2;
    return q;
}

/* A new request of stage s, or NULL when out of memory. im is sent as a JSON string; our own
 * base64 (trusted) is sent from where it is and never needs escaping. */
static struct chain_req *new_req(const struct pipeline *p, struct item *it, int s, int index,
                                 const char *im, size_t n, int trusted)
{
    const struct stage *st = &p->stages[s];
    struct chain_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->it = it;
    r->stage = s;
    r->index = index;
    r->rng = (it->seq + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)s << 32 | (uint32_t)index);
    if (!trusted) {
        /* A string from a server's answer, whose tree is gone once the requests are made: our
         * own copy, escaped when it needs it (base64 never does). */
        if (needs_escape(im, n))
            r->im_owned = json_escape(im, &r->im_len);
        else if ((r->im_owned = malloc(n + 1))) {
            memcpy(r->im_owned, im, n + 1);
            r->im_len = n;
        }
        if (!r->im_owned)
            goto oom;
        r->im = r->im_owned;
    } else {
        r->im = im;
        r->im_len = n;
    }
    size_t len = 0, cap = 0;
    int bad = put(&r->tail, &len, &cap, "\"", 1);
    for (int f = 0; f < st->n_fields && !bad; f++) {
        const struct stage_field *fd = &st->fields[f];
        size_t kl;
        char *k = json_escape(fd->name, &kl);
        bad = !k || put(&r->tail, &len, &cap, ",\"", 2) || put(&r->tail, &len, &cap, k, kl) ||
              put(&r->tail, &len, &cap, "\":", 2);
        free(k);
        if (bad)
            break;
        if (fd->result_of >= 0) {
            const cJSON *v = it->results[fd->result_of];
            char *txt = v ? cJSON_PrintUnformatted(v) : NULL;
            if (v && !txt)
                bad = 1;
            else
                bad = txt ? put(&r->tail, &len, &cap, txt, strlen(txt)) : put(&r->tail, &len, &cap, "null", 4);
            free(txt);
        } else {
            bad = put(&r->tail, &len, &cap, fd->literal, strlen(fd->literal));
        }
    }
    if (bad || put(&r->tail, &len, &cap, "}]", 2))
        goto oom;
    r->tail_len = len;
    it->outstanding[s]++;
    it->in_flight++;
    return r;
oom:
    chain_req_free(r);
    return NULL;
}

/* The value of a result as a tree (results are kept as the text the server sent). NULL when
 * out of memory. The caller deletes it. */
static cJSON *tree_of(const cJSON *r)
{
    if (cJSON_IsRaw(r))
        return cJSON_Parse(r->valuestring);
    char *t = cJSON_PrintUnformatted(r);
    cJSON *v = t ? cJSON_Parse(t) : NULL;
    free(t);
    return v;
}

/* Starts the requests of "each" stage s, one per element of its source's array, appending them
 * at *tail. Returns their number, or -1 when the item failed (the reason recorded). */
static int each_requests(const struct pipeline *p, struct item *it, int s, struct chain_req ***tail)
{
    const struct stage *st = &p->stages[s];
    const struct stage *src = &p->stages[st->each_stage];
    cJSON *tree = tree_of(it->results[st->each_stage]);
    const cJSON *arr = cJSON_IsObject(tree) ? cJSON_GetObjectItemCaseSensitive(tree, st->each_array) : NULL;
    int n = -1, i = 0;
    if (!cJSON_IsArray(arr)) {
        item_fail(it, "%s: %s's result has no array \"%s\"", st->name, src->name, st->each_array);
        goto out;
    }
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const cJSON *f = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, st->each_field) : NULL;
        if (!cJSON_IsString(f)) {
            item_fail(it, "%s: element %d of %s's \"%s\" has no string \"%s\"", st->name, i, src->name,
                      st->each_array, st->each_field);
            goto out;
        }
    }
    /* The stage's result: one slot per element, filled in as the answers come back. */
    int count = i;
    it->results[s] = cJSON_CreateArray();
    for (i = 0; i < count && it->results[s]; i++) {
        cJSON *null = cJSON_CreateNull();
        if (!null || !cJSON_AddItemToArray(it->results[s], null)) {
            cJSON_Delete(null);
            cJSON_Delete(it->results[s]);
            it->results[s] = NULL;
        }
    }
    if (!it->results[s]) {
        item_fail(it, "%s: out of memory", st->name);
        it->state[s] = ST_FAILED;
        goto out;
    }
    if (count)
        it->state[s] = ST_RUNNING;
    i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const char *str = cJSON_GetObjectItemCaseSensitive(e, st->each_field)->valuestring;
        if (!(**tail = new_req(p, it, s, i, str, strlen(str), 0))) {
            item_fail(it, "%s[%d]: out of memory", st->name, i);
            if (it->outstanding[s] == 0)
                it->state[s] = ST_FAILED;
            goto out;
        }
        *tail = &(**tail)->next;
    }
    n = count;
out:
    cJSON_Delete(tree);
    return n;
}

/* Settles the stages that can be settled without a request, and starts the ones whose inputs are
 * ready. Returns the new requests. */
struct chain_req *chain_next(const struct run *run, struct item *it)
{
    const struct pipeline *p = run->p;
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
            if (!(*tail = new_req(p, it, s, 0, it->b64, it->b64_len, 1))) {
                item_fail(it, "%s: out of memory", st->name);
                it->state[s] = ST_FAILED;
                return head;
            }
            tail = &(*tail)->next;
            settled = 0;
            continue;
        }
        /* INPUT_EACH: one request per element of the source's array. */
        int n = each_requests(p, it, s, &tail);
        if (n < 0)
            return head;
        if (n == 0) {
            it->state[s] = ST_DONE; /* later stages, which may depend on it, come next */
            continue;
        }
        settled = 0;
    }
    if (settled && it->in_flight == 0 && it->status == ITEM_PENDING)
        it->status = ITEM_OK;
    if (!head && chain_finished(it))
        item_drop_payload(it);
    return head;
}

int chain_finished(const struct item *it)
{
    return it->in_flight == 0 && it->status != ITEM_PENDING;
}

int chain_parse_answer(const char *body, size_t len, cJSON **result, char *err, size_t errlen)
{
    *result = NULL;
    char why[160];
    if (json_check(body, len, why, sizeof why)) {
        snprintf(err, errlen, "the answer is %s%s", strstr(why, "not JSON") == why ? "" : "not valid JSON: ", why);
        return -1;
    }
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
        i++;
    if (i >= len || body[i] != '{') {
        snprintf(err, errlen, "the answer is not a JSON object");
        return -1;
    }
    static const struct json_path result_path = {.step = {{"result", 6, 0}}, .n = 1};
    const char *v;
    size_t vl;
    if (json_find(body, len, &result_path, &v, &vl)) {
        snprintf(err, errlen, "the answer has no \"result\"");
        return -1;
    }
    /* Kept as the exact bytes sent: no number goes through a double, no string is decoded. */
    char *text = malloc(vl + 1);
    if (text) {
        memcpy(text, v, vl);
        text[vl] = 0;
        *result = cJSON_CreateRaw(text);
        free(text);
    }
    if (!*result) {
        snprintf(err, errlen, "out of memory for the answer");
        return -1;
    }
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

enum chain_outcome chain_outcome(const struct chain_answer *a, cJSON **result, char *err, size_t errlen)
{
    *result = NULL;
    const char *body = a->body ? a->body : "";
    if (a->cc != CURLE_OK) {
        const char *why = a->curl_err && a->curl_err[0] ? a->curl_err : curl_easy_strerror(a->cc);
        snprintf(err, errlen, "%s", why);
        switch (a->cc) {
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
    if (a->status < 200 || a->status > 299) {
        char ex[96];
        excerpt(body, a->len, ex, sizeof ex);
        if (a->status >= 300 && a->status < 400 && a->location) /* annotate does not follow redirects */
            snprintf(err, errlen, "HTTP %ld to %.300s (point the stage's url there)%s%s", a->status, a->location,
                     ex[0] ? ": " : "", ex);
        else
            snprintf(err, errlen, "HTTP %ld%s%s", a->status, ex[0] ? ": " : "", ex);
        return (a->status >= 500 || a->status == 429 || a->status == 408) ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    char why[128];
    if (chain_parse_answer(body, a->len, result, why, sizeof why)) {
        char ex[96];
        excerpt(body, a->len, ex, sizeof ex);
        snprintf(err, errlen, "%s: %s", why, ex);
        return OUTCOME_RETRY;
    }
    return OUTCOME_OK;
}

int chain_max_attempts(const struct run *run, int stage)
{
    int r = run->p->stages[stage].retries;
    return 1 + (r >= 0 ? r : run->cfg->retries);
}

long chain_backoff_ms(const struct config *cfg, int attempt, long retry_after_s, uint64_t *rng)
{
    /* The ceiling doubles until --backoff-max-ms, however many retries it takes (2^60 x any
     * --backoff-ms is past every cap). */
    double cap = ldexp((double)cfg->backoff_ms, attempt > 61 ? 60 : attempt < 1 ? 0 : attempt - 1);
    if (cap > (double)cfg->backoff_max_ms)
        cap = (double)cfg->backoff_max_ms;
    long d = cap >= 1 ? (long)(rng_next(rng) % ((uint64_t)cap + 1)) : 0;
    /* Retry-After is honoured up to max(--backoff-max-ms, 60 s): a server asking for days must
     * not park an image (or a worker) for days. */
    long ra_cap = cfg->backoff_max_ms > 60000 ? cfg->backoff_max_ms : 60000;
    if (retry_after_s >= 0) {
        long ra = retry_after_s > ra_cap / 1000 ? ra_cap : retry_after_s * 1000;
        if (ra > d)
            d = ra;
    }
    return d;
}

void chain_req_free(struct chain_req *req)
{
    if (!req)
        return;
    free(req->tail);
    free(req->im_owned);
    free(req);
}

/* 1 while a stage that sends the image itself has yet to run or is running: until then the
 * payload must stay (a retry re-sends it). */
static int payload_needed(const struct pipeline *p, const struct item *it)
{
    for (int s = 0; s < p->n; s++)
        if (p->stages[s].input == INPUT_IMAGE && (it->state[s] == ST_WAITING || it->state[s] == ST_RUNNING))
            return 1;
    return 0;
}

/* Records a request's end: result (owned, taken) when it succeeded, or NULL and err. Frees req.
 * The one place where a request stops counting as in flight, its attempts are added to the
 * item's, its time is logged, and the payload is let go once nothing will send it again. */
static void settle(const struct run *run, struct chain_req *req, cJSON *result, const char *err)
{
    const struct pipeline *p = run->p;
    struct item *it = req->it;
    int s = req->stage;
    const struct stage *st = &p->stages[s];
    it->in_flight--;
    it->outstanding[s]--;
    if (req->attempts > 0)
        it->requests++; /* one cancelled before it was sent is no request: retries = attempts - requests */
    it->attempts += (uint32_t)req->attempts;
    if (req->t_end > 0)
        item_log_request(it, s, (uint32_t)((req->t_end - req->t_first) * 1e6), req->attempts);
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
    if (it->status == ITEM_FAILED || !payload_needed(p, it))
        item_drop_payload(it);
    chain_req_free(req);
}

void chain_abandon(const struct run *run, struct chain_req *req, const char *why)
{
    settle(run, req, NULL, why);
}

enum chain_go chain_attempt_begin(const struct run *run, struct chain_req *req, double now)
{
    if (req->it->status == ITEM_FAILED) {
        /* A sibling failed: the item's row says so; the rest need not be sent. */
        settle(run, req, NULL, "not sent: an earlier request of this image failed");
        return CHAIN_SETTLED;
    }
    if (atomic_load(&run->stop) == RUN_ABORT) {
        req->it->no_row = 1; /* not the image's fault: no row, --resume runs it */
        settle(run, req, NULL, "not sent: the run was stopped");
        return CHAIN_SETTLED;
    }
    if (!req->t_first)
        req->t_first = now;
    req->t_attempt = now;
    req->attempts++;
    req->sends = 0;
    req->sent = 0;
    atomic_fetch_add_explicit(&run->shared->in_flight, 1, memory_order_relaxed);
    return CHAIN_SEND;
}

/* 1 for a final answer that says the stage is not set up for us, whatever the image: a wrong
 * or missing token, a wrong path or method, a certificate that does not verify. */
static int setup_error(const struct chain_answer *a)
{
    if (a->cc == CURLE_PEER_FAILED_VERIFICATION || a->cc == CURLE_SSL_CACERT_BADFILE ||
        a->cc == CURLE_SSL_CERTPROBLEM || a->cc == CURLE_SSL_CONNECT_ERROR)
        return 1;
    return a->cc == CURLE_OK && (a->status == 401 || a->status == 403 || a->status == 404 || a->status == 405);
}

/* Records why the run must stop (the first reason wins) and stops it. */
static void stop_on_setup_error(const struct run *run, int s, const struct chain_answer *a, const char *err)
{
    struct shared_page *sh = run->shared;
    const struct stage *st = &run->p->stages[s];
    int expect = 0;
    if (atomic_compare_exchange_strong(&sh->fatal_claim, &expect, 1)) {
        const char *hint = a->cc != CURLE_OK ? "check --cacert (or the server's certificate), or --insecure"
                           : a->status == 401 || a->status == 403
                               ? "check the stage's credentials (its headers, e.g. Authorization)"
                               : a->status == 404 ? "check the stage's url (and --server, which relative urls join)"
                                                  : "check the stage's url: the server refuses this method there";
        snprintf(sh->fatal_msg, sizeof sh->fatal_msg,
                 "%s: the server at %s answered %d requests in a row with %s: %s. Nothing was written for "
                 "those images; after the fix, run again with --resume",
                 st->name, st->full_url ? st->full_url : st->url, CHAIN_SETUP_FAILS, err, hint);
        atomic_store(&sh->fatal, 1);
    }
    atomic_store((atomic_int *)&run->stop, RUN_ABORT);
}

enum chain_step chain_attempt_end(const struct run *run, struct chain_req *req, const struct chain_answer *a,
                                  double now, double *retry_at)
{
    atomic_fetch_sub_explicit(&run->shared->in_flight, 1, memory_order_relaxed);
    /* libcurl re-sends a request by itself when a reused connection turns out dead: count such
     * re-sends, so the attempts match what servers saw. */
    if (req->sends > 1)
        req->attempts += req->sends - 1;
    req->sends = 0;
    req->t_end = now;
    cJSON *result;
    char err[512];
    enum chain_outcome o = chain_outcome(a, &result, err, sizeof err);
    int s = req->stage, setup = o == OUTCOME_FAIL && setup_error(a);
    if (!setup && (a->cc == CURLE_OK || o == OUTCOME_OK))
        atomic_store(&run->shared->stage[s].answered, 1);
    if (o == OUTCOME_OK) {
        settle(run, req, result, NULL);
        return CHAIN_DONE;
    }
    if (setup && !atomic_load(&run->shared->stage[s].answered)) {
        /* The server has never answered this stage as one that is set up for us: the image is
         * not at fault, so it gets no row (--resume will run it once the set-up is mended), and
         * a few such answers in a row stop the run. */
        req->it->no_row = 1;
        if (atomic_fetch_add(&run->shared->stage[s].setup_fails, 1) + 1 >= CHAIN_SETUP_FAILS)
            stop_on_setup_error(run, s, a, err);
    }
    if (o == OUTCOME_RETRY && req->attempts < chain_max_attempts(run, req->stage) &&
        atomic_load(&run->stop) != RUN_ABORT && req->it->status != ITEM_FAILED) {
        *retry_at = now + (double)chain_backoff_ms(run->cfg, req->attempts, a->retry_after_s, &req->rng) / 1e3;
        return CHAIN_RETRY;
    }
    if (o == OUTCOME_RETRY && atomic_load(&run->stop) == RUN_ABORT)
        req->it->no_row = 1; /* it would have been retried: not the image's fault */
    settle(run, req, NULL, err);
    return CHAIN_FAIL;
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
