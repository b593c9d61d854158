/* chain: see chain.h. */
#include "chain/chain.h"

#include "common/b64.h"
#include "common/json.h"
#include "endpoint/limit.h"
#include "common/mime.h"

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

/* The element's decoded bytes, for a body that sends bytes or the type of an "each" element
 * (which is base64 text). Returns 0, or -1 with the item failed. */
static int decode_element(struct chain_req *r, const struct stage *st, const char *el, size_t n, int whole)
{
    size_t take = whole ? n : (n < 16 ? n & ~(size_t)3 : 16);
    if (!(r->el_bytes = malloc(b64_decoded_max(take) + 1)))
        return item_fail(r->it, "%s[%d]: out of memory", st->name, r->index), -1;
    if (b64_decode(el, take, r->el_bytes, &r->el_bytes_len) && whole)
        return item_fail(r->it, "%s[%d]: the element is not base64, so its bytes cannot be sent", st->name, r->index), -1;
    return 0;
}

/* A new request of stage s: its body filled from the image, or from element el (n bytes, the
 * text of an answer's string) of an "each" stage. NULL when it cannot be made; the item has
 * failed, with why. */
static struct chain_req *new_req(const struct run *run, struct item *it, int s, int index, const char *el, size_t n)
{
    const struct pipeline *p = run->p;
    const struct stage *st = &p->stages[s];
    struct chain_req *r = calloc(1, sizeof *r);
    if (!r) {
        item_fail(it, "%s: out of memory", st->name);
        return NULL;
    }
    r->it = it;
    r->stage = s;
    r->index = index;
    r->rng = (it->seq + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)s << 32 | (uint32_t)index);
    r->failed_replica = -1;
    struct fill_src src = {.b64 = it->b64, .b64_len = it->b64_len, .b64_ours = 1, .bytes = it->raw, .bytes_len = it->raw_len,
                           .mime = it->mime ? it->mime : "application/octet-stream", .path = it->path,
                           .path_len = it->path_len, .index = index, .results = (const cJSON *const *)it->results};
    const char *slash = strrchr(it->path, '/');
    src.name = slash ? slash + 1 : it->path;
    if (st->input == INPUT_EACH) {
        /* A string from a server's answer, whose tree is gone once the requests are made: our
         * own copy. */
        if (!(r->el = malloc(n + 1))) {
            item_fail(it, "%s[%d]: out of memory", st->name, index);
            goto bad;
        }
        memcpy(r->el, el, n);
        r->el[n] = 0;
        src.b64 = r->el;
        src.b64_len = n;
        src.b64_ours = 0;
        int bytes = (st->body.needs & NEED_BYTES) != 0;
        if (decode_element(r, st, el, n, bytes))
            goto bad;
        src.mime = mime_of(r->el_bytes, r->el_bytes_len < MIME_HEAD ? r->el_bytes_len : MIME_HEAD, NULL);
        src.bytes = r->el_bytes;
        src.bytes_len = bytes ? r->el_bytes_len : 0;
    }
    r->mime = src.mime;
    char why[200];
    if (st->body.kind == BODY_FORM) {
        if (!(r->parts = calloc((size_t)st->body.n_parts, sizeof *r->parts))) {
            item_fail(it, "%s: out of memory", st->name);
            goto bad;
        }
        r->n_parts = st->body.n_parts;
        for (int k = 0; k < st->body.n_parts; k++) {
            const struct form_part *fp = &st->body.parts[k];
            if (fp->file) {
                struct tseg seg = {.kind = T_BYTES, .ctx = C_RAW};
                struct tmpl t = {&seg, 1, 1};
                if (tmpl_fill(&t, &src, &r->parts[k], why, sizeof why))
                    goto fill_failed;
            } else if (tmpl_fill(&fp->value, &src, &r->parts[k], why, sizeof why)) {
                goto fill_failed;
            }
        }
    } else if (tmpl_fill(&st->body.t, &src, &r->body, why, sizeof why)) {
        goto fill_failed;
    }
    it->outstanding[s]++;
    it->in_flight++;
    return r;
fill_failed:
    if (st->input == INPUT_EACH)
        item_fail(it, "%s[%d]: %s", st->name, index, why);
    else
        item_fail(it, "%s: %s", st->name, why);
bad:
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

/* The text of a result, for an expression (results are kept as the text the server sent).
 * *owned is set when it had to be made. NULL when out of memory. */
static const char *text_of(const cJSON *r, char **owned)
{
    *owned = NULL;
    if (cJSON_IsRaw(r))
        return r->valuestring;
    return *owned = r ? cJSON_PrintUnformatted(r) : strdup("null");
}

/* The elements of "each" stage s: a list of malloc'd strings, from "items" or from
 * result[array][i][field]. Returns their number, or -1 with the item failed. */
struct elements {
    char **s;
    size_t *len;
    int n, cap;
    int bad; /* 1: an element that is not a string; 2: out of memory */
};

static int add_element(void *arg, const char *text, size_t len)
{
    struct elements *e = arg;
    cJSON *v = cJSON_ParseWithLength(text, len);
    const char *str = cJSON_GetStringValue(v);
    int rc = 0;
    if (!str) {
        rc = 1;
    } else {
        if (e->n == e->cap) {
            int cap = e->cap ? e->cap * 2 : 8;
            char **ns = realloc(e->s, (size_t)cap * sizeof *ns);
            size_t *nl = ns ? realloc(e->len, (size_t)cap * sizeof *nl) : NULL;
            if (ns)
                e->s = ns;
            if (nl)
                e->len = nl;
            if (!ns || !nl)
                rc = 2;
            else
                e->cap = cap;
        }
        if (!rc) {
            size_t l = strlen(str); /* a string holding \u0000 stops there; base64 never does */
            if ((e->s[e->n] = malloc(l + 1))) {
                memcpy(e->s[e->n], str, l + 1);
                e->len[e->n++] = l;
            } else {
                rc = 2;
            }
        }
    }
    cJSON_Delete(v);
    e->bad = rc;
    return rc;
}

static int each_requests(const struct run *run, struct item *it, int s, struct chain_req ***tail)
{
    const struct pipeline *p = run->p;
    const struct stage *st = &p->stages[s];
    const struct stage *src = &p->stages[st->each_stage];
    struct elements el = {0};
    int n = -1;
    if (st->items.text) {
        char *owned, why[300];
        const char *text = text_of(it->results[st->each_stage], &owned);
        int got = text ? expr_run(&st->items, text, strlen(text), add_element, &el, why, sizeof why) : -1;
        free(owned);
        if (got < 0) {
            if (!text || el.bad == 2)
                item_fail(it, "%s: out of memory", st->name);
            else if (el.bad == 1)
                item_fail(it, "%s: element %d of \"items\" (%s) on %s's result is not a string", st->name, el.n,
                          st->items.text, src->name);
            else
                item_fail(it, "%s: \"items\" on %s's result: %s", st->name, src->name, why);
            goto out;
        }
    } else {
        cJSON *tree = tree_of(it->results[st->each_stage]);
        const cJSON *arr = cJSON_IsObject(tree) ? cJSON_GetObjectItemCaseSensitive(tree, st->each_array) : NULL;
        int i = 0;
        if (!cJSON_IsArray(arr)) {
            item_fail(it, "%s: %s's result has no array \"%s\"", st->name, src->name, st->each_array);
            cJSON_Delete(tree);
            goto out;
        }
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            const cJSON *f = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, st->each_field) : NULL;
            char *t = cJSON_IsString(f) ? cJSON_PrintUnformatted(f) : NULL;
            int r = !f || !cJSON_IsString(f) ? 1 : !t ? 2 : add_element(&el, t, strlen(t));
            free(t);
            if (r) {
                if (r == 1)
                    item_fail(it, "%s: element %d of %s's \"%s\" has no string \"%s\"", st->name, i, src->name,
                              st->each_array, st->each_field);
                else
                    item_fail(it, "%s: out of memory", st->name);
                cJSON_Delete(tree);
                goto out;
            }
        }
        cJSON_Delete(tree);
    }
    /* The stage's result: one slot per element, filled in as the answers come back. */
    int count = el.n;
    it->results[s] = cJSON_CreateArray();
    for (int i = 0; i < count && it->results[s]; i++) {
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
    for (int i = 0; i < count; i++) {
        if (!(**tail = new_req(run, it, s, i, el.s[i], el.len[i]))) {
            if (it->outstanding[s] == 0)
                it->state[s] = ST_FAILED;
            goto out;
        }
        *tail = &(**tail)->next;
    }
    n = count;
out:
    for (int i = 0; i < el.n; i++)
        free(el.s[i]);
    free(el.s);
    free(el.len);
    return n;
}

static int first_truthy(void *arg, const char *text, size_t len)
{
    *(int *)arg = expr_text_truthy(text, len);
    return 1; /* the first output decides */
}

/* A jq "when": run on {"STAGE": result, ...} of the stages it names. Returns 1 (run the stage),
 * 0 (skip it) or -1 (the expression failed: the item has failed). */
static int when_holds(const struct pipeline *p, struct item *it, int s)
{
    const struct stage *st = &p->stages[s];
    size_t len, cap = 256;
    char *in = malloc(cap), why[300];
    int first = 1, truth = 0;
    if (!in)
        goto oom;
    strcpy(in, "{");
    len = 1;
    for (int d = 0; d < s; d++) {
        if (!(st->when_mask >> d & 1))
            continue;
        char *owned;
        const char *t = text_of(it->results[d], &owned);
        if (!t)
            goto oom;
        size_t need = len + strlen(p->stages[d].name) + strlen(t) + 8;
        if (need > cap) {
            while (need > cap)
                cap *= 2;
            char *ni = realloc(in, cap);
            if (!ni) {
                free(owned);
                goto oom;
            }
            in = ni;
        }
        len += (size_t)sprintf(in + len, "%s\"%s\":%s", first ? "" : ",", p->stages[d].name, t);
        first = 0;
        free(owned);
    }
    strcpy(in + len, "}");
    len++;
    int n = expr_run(&st->when, in, len, first_truthy, &truth, why, sizeof why);
    free(in);
    if (n < 0 && strncmp(why, "jq: ", 4) == 0) {
        item_fail(it, "%s: \"when\": %s", st->name, why);
        return -1;
    }
    return n != 0 && truth;
oom:
    free(in);
    item_fail(it, "%s: out of memory", st->name);
    return -1;
}

/* Settles the stages that can be settled without a request, and starts the ones whose inputs are
 * ready. Returns the new requests. */
struct chain_req *chain_next(const struct run *run, struct item *it)
{
    const struct pipeline *p = run->p;
    struct chain_req *head = NULL, **tail = &head;
    if (it->requeue) {
        /* The members of a batch that was split, each to go in a batch of its own. */
        head = it->requeue;
        it->requeue = NULL;
        for (tail = &head; *tail; tail = &(*tail)->next)
            ;
    }
    if (it->status == ITEM_FAILED)
        return head;
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
            else if ((st->when_mask >> d & 1) && !st->when.text && !chain_truthy(it->results[d]))
                skip = 1;
        }
        if (!skip && ready && st->when.text) {
            int w = when_holds(p, it, s);
            if (w < 0) {
                it->state[s] = ST_FAILED;
                return head;
            }
            skip = !w;
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
            if (((st->body.needs & NEED_B64) && !it->b64) || ((st->body.needs & NEED_BYTES) && !it->raw)) {
                item_fail(it, "%s: the image was not loaded", st->name);
                return head;
            }
            it->state[s] = ST_RUNNING;
            if (!(*tail = new_req(run, it, s, 0, NULL, 0))) {
                it->state[s] = ST_FAILED;
                return head;
            }
            tail = &(*tail)->next;
            settled = 0;
            continue;
        }
        /* INPUT_EACH: one request per element of the source's array. */
        int n = each_requests(run, it, s, &tail);
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

/* The only output of an expression, kept as text. */
struct one_out {
    char *text;
    size_t len;
    int n;
};

static int keep_output(void *arg, const char *text, size_t len)
{
    struct one_out *o = arg;
    if (o->n++ == 0 && (o->text = malloc(len + 1))) {
        memcpy(o->text, text, len);
        o->text[len] = 0;
        o->len = len;
    }
    return 0;
}

static const struct json_path result_path = {.step = {{"result", 6, 0}}, .n = 1};

/* Leading white space skipped. */
static const char *skip_ws(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return s + i;
}

int chain_parse_result(const struct stage *st, const char *body, size_t len, cJSON **result, char *err, size_t errlen)
{
    *result = NULL;
    char why[300];
    if (json_check(body, len, why, sizeof why)) {
        snprintf(err, errlen, "the answer is %s%s", strstr(why, "not JSON") == why ? "" : "not valid JSON: ", why);
        return -1;
    }
    const struct expr *e = st ? &st->result : NULL;
    const struct json_path *path = e && e->plain ? &e->path : e ? NULL : &result_path;
    struct one_out o = {0};
    if (path) {
        /* A plain path: the value's exact bytes, no number through a double, no string decoded. */
        const char *v;
        size_t vl;
        if (json_find(body, len, path, &v, &vl)) {
            if (path->n > 0 && path->step[0].key && (skip_ws(body, len) >= body + len || *skip_ws(body, len) != '{'))
                snprintf(err, errlen, "the answer is not a JSON object");
            else if (path->n == 1 && path->step[0].key)
                snprintf(err, errlen, "the answer has no \"%.*s\"", (int)path->step[0].keylen, path->step[0].key);
            else
                snprintf(err, errlen, "the answer has nothing at %s", e->text);
            return -1;
        }
        keep_output(&o, v, vl);
    } else {
        int n = expr_run(e, body, len, keep_output, &o, why, sizeof why);
        if (n < 0 || o.n == 0) {
            snprintf(err, errlen, "\"result\" %s%s", n < 0 ? "failed: " : "yielded nothing", n < 0 ? why : "");
            free(o.text);
            return -1;
        }
        if (o.n > 1) {
            snprintf(err, errlen, "\"result\" yielded %d values, not one (collect them with [...])", o.n);
            free(o.text);
            return -1;
        }
    }
    if (o.text)
        *result = cJSON_CreateRaw(o.text);
    free(o.text);
    if (!*result) {
        snprintf(err, errlen, "out of memory for the answer");
        return -1;
    }
    return 0;
}

int chain_parse_answer(const char *body, size_t len, cJSON **result, char *err, size_t errlen)
{
    return chain_parse_result(NULL, body, len, result, err, errlen);
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

/* Runs an expression for its first output. Returns 1 with the output's text in *out (malloc'd),
 * 0 when it yields nothing, null or false, -1 when it fails (why in err). */
static int eval_first(const struct expr *e, const char *body, size_t len, char **out, char *err, size_t errlen)
{
    struct one_out o = {0};
    *out = NULL;
    int n = expr_run(e, body, len, keep_output, &o, err, errlen);
    if (n < 0) {
        free(o.text);
        return -1;
    }
    if (o.n == 0 || !o.text || !expr_text_truthy(o.text, o.len)) {
        free(o.text);
        return 0;
    }
    *out = o.text;
    return 1;
}

/* A value's text for a message: a string's content (printable), anything else its JSON. */
static void message_of(const char *text, char *out, size_t outlen)
{
    cJSON *v = text[0] == '"' ? cJSON_Parse(text) : NULL;
    const char *s = cJSON_GetStringValue(v);
    excerpt(s ? s : text, strlen(s ? s : text), out, outlen);
    cJSON_Delete(v);
}

static int retried_status(const struct stage *st, long status)
{
    if (!st || st->n_retry_on < 0)
        return status >= 500 || status == 429 || status == 408;
    for (int i = 0; i < st->n_retry_on; i++)
        if (st->retry_on[i] == status)
            return 1;
    return 0;
}

enum chain_outcome chain_read_answer(const struct stage *st, const struct chain_answer *a, cJSON **result,
                                     long *retry_after_s, char *err, size_t errlen)
{
    *result = NULL;
    *retry_after_s = -1;
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
    int ok = a->status >= 200 && a->status <= 299;
    /* The expressions that read failures ("error", "retry_if", "retry_after") read JSON answers
     * only: a proxy's HTML page is not the model's message. */
    int has_exprs = st && (st->error.text || st->retry_if.text || st->retry_after.text);
    char why[300], msg[200] = "";
    int json = has_exprs && json_check(body, a->len, why, sizeof why) == 0;
    int failed = !ok, retry = !ok && retried_status(st, a->status);
    char *v = NULL;
    if (json && st->error.text && !(ok && st->batch_size)) { /* a batch's: read on each element */
        int r = eval_first(&st->error, body, a->len, &v, why, sizeof why);
        if (r > 0) {
            message_of(v, msg, sizeof msg);
            failed = 1;
        } else if (r < 0 && !ok) {
            snprintf(msg, sizeof msg, "(\"error\" failed: %.150s)", why);
        }
        free(v);
    }
    if (failed && json && st->retry_if.text) {
        int r = eval_first(&st->retry_if, body, a->len, &v, why, sizeof why);
        free(v);
        if (r > 0)
            retry = 1;
    }
    if (failed && retry && json && st->retry_after.text && eval_first(&st->retry_after, body, a->len, &v, why, sizeof why) > 0) {
        cJSON *n = cJSON_Parse(v);
        double secs = cJSON_IsNumber(n) ? n->valuedouble : cJSON_IsString(n) ? strtod(n->valuestring, NULL) : -1;
        if (secs >= 0)
            *retry_after_s = secs > 86400 ? 86400 : (long)ceil(secs);
        cJSON_Delete(n);
        free(v);
    }
    if (!ok) {
        char ex[96];
        excerpt(body, a->len, ex, sizeof ex);
        const char *shown = msg[0] ? msg : ex;
        if (a->status >= 300 && a->status < 400 && a->location) /* annotate does not follow redirects */
            snprintf(err, errlen, "HTTP %ld to %.300s (point the stage's url there)%s%s", a->status, a->location,
                     shown[0] ? ": " : "", shown);
        else
            snprintf(err, errlen, "HTTP %ld%s%s", a->status, shown[0] ? ": " : "", shown);
        return retry ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    if (failed) { /* a 2xx that says it failed */
        snprintf(err, errlen, "%s", msg);
        return retry ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    if (chain_parse_result(st, body, a->len, result, why, sizeof why)) {
        char ex[96];
        excerpt(body, a->len, ex, sizeof ex);
        snprintf(err, errlen, "%s: %s", why, ex);
        return OUTCOME_RETRY;
    }
    return OUTCOME_OK;
}

enum chain_outcome chain_outcome(const struct chain_answer *a, cJSON **result, char *err, size_t errlen)
{
    long ra;
    return chain_read_answer(NULL, a, result, &ra, err, errlen);
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
    filled_free(&req->body);
    for (int i = 0; i < req->n_parts; i++)
        filled_free(&req->parts[i]);
    free(req->parts);
    free(req->el);
    free(req->el_bytes);
    for (int i = 0; i < req->n_members; i++)
        chain_req_free(req->members[i]);
    free(req->members);
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
    /* A failed image's payload goes once no request of it is in flight: a sibling still in
     * curl may be reading its body from it. */
    if ((it->status == ITEM_FAILED && it->in_flight == 0) || (it->status != ITEM_FAILED && !payload_needed(p, it)))
        item_drop_payload(it);
    chain_req_free(req);
}

static void batch_fail_all(const struct run *run, struct chain_req *b, const char *why, int no_row);

void chain_abandon(const struct run *run, struct chain_req *req, const char *why)
{
    if (req->n_members)
        batch_fail_all(run, req, why, 0);
    else
        settle(run, req, NULL, why);
}

static int outage_kind(const struct chain_answer *a);

/* The replica the attempt goes to (see chain.h), counted as outstanding there. */
static void pick_replica(const struct run *run, struct chain_req *req, double now)
{
    const struct stage *st = &run->p->stages[req->stage];
    if (st->n_urls < 2)
        return;
    struct shared_replica *r = &run->shared->replica[st->replica_base];
    int64_t t = (int64_t)(now * 1000);
    int best = -1, best_out = 0, soonest = 0, n = st->n_urls;
    int start = (int)(rng_next(&req->rng) % (uint64_t)n); /* ties: a random one */
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (int j = 0; j < n; j++) {
            int k = (start + j) % n;
            if (atomic_load(&r[k].ejected_until_ms) > t)
                continue;
            if (pass == 0 && k == req->failed_replica && n > 1)
                continue; /* a retry goes elsewhere when it can */
            int out = atomic_load(&r[k].outstanding);
            if (best < 0 || out < best_out) {
                best = k;
                best_out = out;
            }
        }
    if (best < 0) /* every one ejected: the one back first */
        for (int k = 1; k < n; k++)
            if (atomic_load(&r[k].ejected_until_ms) < atomic_load(&r[soonest].ejected_until_ms))
                soonest = k;
    req->replica = best >= 0 ? best : soonest;
    atomic_fetch_add(&r[req->replica].outstanding, 1);
}

/* Records how the attempt on its replica went: latency, errors, ejection. */
static void replica_note(const struct run *run, struct chain_req *req, const struct chain_answer *a, int ok, double now)
{
    const struct stage *st = &run->p->stages[req->stage];
    if (st->n_urls < 2)
        return;
    struct shared_replica *all = &run->shared->replica[st->replica_base], *r = &all[req->replica];
    atomic_fetch_sub(&r->outstanding, 1);
    atomic_fetch_add(&r->attempts, 1);
    hist_add(&r->latency_us, (uint64_t)((now - req->t_attempt) * 1e6));
    req->failed_replica = -1;
    if (ok || (a->cc == CURLE_OK && !outage_kind(a))) {
        if (ok) {
            atomic_store(&r->fails_in_row, 0);
            atomic_store(&r->ejections, 0);
        } else {
            atomic_fetch_add(&r->errors, 1);
        }
        return;
    }
    atomic_fetch_add(&r->errors, 1);
    req->failed_replica = outage_kind(a) ? req->replica : -1;
    if (!outage_kind(a) || atomic_fetch_add(&r->fails_in_row, 1) + 1 < CHAIN_EJECT_AFTER)
        return;
    int64_t t = (int64_t)(now * 1000);
    int in_rotation = 0;
    for (int k = 0; k < st->n_urls; k++)
        in_rotation += atomic_load(&all[k].ejected_until_ms) <= t;
    if (in_rotation <= 1 || atomic_load(&r->ejected_until_ms) > t)
        return; /* the last one in rotation stays; an ejected one is not ejected twice */
    int e = atomic_fetch_add(&r->ejections, 1) + 1;
    long secs = (long)CHAIN_EJECT_BASE_S * e;
    atomic_store(&r->ejected_until_ms, t + 1000 * (secs > CHAIN_EJECT_MAX_S ? CHAIN_EJECT_MAX_S : secs));
    atomic_fetch_add(&r->ejected_total, 1);
    atomic_store(&r->fails_in_row, CHAIN_EJECT_AFTER - 1); /* back in: one more failure ejects it again */
}

/* ---- batches ---- */

/* A member leaving its batch takes the batch's attempts and times as its own. */
static void absorb(struct chain_req *m, const struct chain_req *b)
{
    m->attempts += b->attempts;
    if (!m->t_first)
        m->t_first = b->t_first;
    if (b->t_end > 0)
        m->t_end = b->t_end;
}

/* Settles every member of batch b with why, and frees b. */
static void batch_fail_all(const struct run *run, struct chain_req *b, const char *why, int no_row)
{
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        absorb(m, b);
        if (no_row)
            m->it->no_row = 1;
        settle(run, m, NULL, why);
    }
    b->n_members = 0;
    chain_req_free(b);
}

static struct chain_req *batch_new(int stage, int cap)
{
    struct chain_req *b = calloc(1, sizeof *b);
    if (b && !(b->members = calloc((size_t)cap, sizeof *b->members))) {
        free(b);
        b = NULL;
    }
    if (b) {
        b->stage = stage;
        b->failed_replica = -1;
    }
    return b;
}

static void batch_push(struct chain_req *b, struct chain_req *m)
{
    if (!b->n_members) {
        b->it = m->it; /* the first member's: what a driver's per-request bookkeeping reads */
        b->rng = m->rng ^ 0xB5AD4ECEDA1CE2A9ull;
        b->failed_replica = m->failed_replica; /* a split member's retry goes elsewhere */
    }
    m->next = NULL;
    b->members[b->n_members++] = m;
}

struct chain_batcher {
    const struct run *run;
    struct chain_req *open[PIPELINE_MAX_STAGES]; /* per stage: the batch gathering, or NULL */
    double since[PIPELINE_MAX_STAGES];            /* when its first member came */
};

struct chain_batcher *chain_batcher_new(const struct run *run)
{
    struct chain_batcher *b = calloc(1, sizeof *b);
    if (b)
        b->run = run;
    return b;
}

void chain_batcher_free(struct chain_batcher *b)
{
    if (!b)
        return;
    for (int s = 0; s < PIPELINE_MAX_STAGES; s++)
        chain_req_free(b->open[s]);
    free(b);
}

int chain_batched(const struct run *run, const struct chain_req *req)
{
    return !req->n_members && run->p->stages[req->stage].batch_size > 0;
}

struct chain_req *chain_batch_one(const struct run *run, struct chain_req *req)
{
    struct chain_req *b = batch_new(req->stage, 1);
    if (!b) {
        /* Sent as it is, it is settled at once: the image fails with this. */
        item_fail(req->it, "%s: out of memory for a batch", run->p->stages[req->stage].name);
        return req;
    }
    batch_push(b, req);
    return b;
}

struct chain_req *chain_batch_add(struct chain_batcher *bt, struct chain_req *req, double now)
{
    const struct stage *st = &bt->run->p->stages[req->stage];
    int s = req->stage;
    if (req->alone || st->batch_size == 1)
        return chain_batch_one(bt->run, req);
    if (!bt->open[s]) {
        if (!(bt->open[s] = batch_new(s, st->batch_size))) {
            item_fail(req->it, "%s: out of memory for a batch", st->name);
            return req;
        }
        bt->since[s] = now;
    }
    batch_push(bt->open[s], req);
    if (bt->open[s]->n_members < st->batch_size)
        return NULL;
    struct chain_req *full = bt->open[s];
    bt->open[s] = NULL;
    return full;
}

struct chain_req *chain_batch_due(struct chain_batcher *bt, double now, int flush)
{
    for (int s = 0; s < bt->run->p->n; s++)
        if (bt->open[s] && (flush || now >= bt->since[s] + (double)bt->run->p->stages[s].batch_wait_ms / 1e3)) {
            struct chain_req *b = bt->open[s];
            bt->open[s] = NULL;
            return b;
        }
    return NULL;
}

double chain_batch_deadline(const struct chain_batcher *bt)
{
    double t = -1;
    for (int s = 0; s < bt->run->p->n; s++)
        if (bt->open[s]) {
            double due = bt->since[s] + (double)bt->run->p->stages[s].batch_wait_ms / 1e3;
            if (t < 0 || due < t)
                t = due;
        }
    return t;
}

int chain_req_items(const struct chain_req *req, struct item **out)
{
    if (!req->n_members) {
        out[0] = req->it;
        return 1;
    }
    int n = 0;
    for (int i = 0; i < req->n_members && n < CHAIN_BATCH_ITEMS; i++) {
        struct item *it = req->members[i]->it;
        int seen = 0;
        for (int k = n - 1; k >= 0 && !seen; k--)
            seen = out[k] == it;
        if (!seen)
            out[n++] = it;
    }
    return n;
}

/* 1 when every image of req has failed. */
static int all_failed(const struct chain_req *req)
{
    if (!req->n_members)
        return req->it->status == ITEM_FAILED;
    for (int i = 0; i < req->n_members; i++)
        if (req->members[i]->it->status != ITEM_FAILED)
            return 0;
    return 1;
}

int chain_req_moot(const struct run *run, const struct chain_req *req)
{
    return all_failed(req) || run_stop_state(run) == RUN_ABORT;
}

/* Before a batch's attempt: members whose image has failed leave it, and its body is made for
 * the members it still has. Returns 1 when nothing is left to send (b has been freed). */
static int batch_begin(const struct run *run, struct chain_req *b)
{
    const struct stage *st = &run->p->stages[b->stage];
    int stop = run_stop_state(run) == RUN_ABORT;
    int kept = 0, changed = 0;
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        if (m->it->status == ITEM_FAILED || stop) {
            /* as chain_attempt_begin settles one request: a failed image keeps its row */
            absorb(m, b);
            if (m->it->status != ITEM_FAILED)
                m->it->no_row = 1; /* stopped: not the image's fault, --resume runs it */
            settle(run, m, NULL, m->it->status == ITEM_FAILED ? "not sent: an earlier request of this image failed"
                                                              : "not sent: the run was stopped");
            changed = 1;
        } else {
            b->members[kept++] = m;
        }
    }
    b->n_members = kept;
    if (!kept) {
        chain_req_free(b);
        return 1;
    }
    b->it = b->members[0]->it;
    if (changed || !b->body.n) {
        const struct filled *items[CHAIN_BATCH_ITEMS];
        for (int i = 0; i < kept; i++)
            items[i] = &b->members[i]->body;
        filled_free(&b->body);
        if (batch_fill(&st->body.outer, items, kept, &b->body)) {
            batch_fail_all(run, b, "out of memory for the batch's body", 0);
            return 1;
        }
    }
    return 0;
}

struct span {
    const char *p;
    size_t n;
    int count, cap;
};

static int take_element(void *arg, const char *v, size_t n)
{
    struct span *e = arg;
    if (e[0].count >= e[0].cap)
        return 1;
    e[e[0].count].p = v;
    e[e[0].count++].n = n;
    return 0;
}

/* A batch's result (the list): one element per member into el, or -1 with why. */
static int batch_split(const struct chain_req *b, const cJSON *result, struct span *el, char *err, size_t errlen)
{
    const char *t = result->valuestring;
    el[0].count = 0;
    el[0].cap = b->n_members;
    int n = json_elements(t, strlen(t), NULL, NULL);
    if (n < 0) {
        char ex[96];
        excerpt(t, strlen(t), ex, sizeof ex);
        snprintf(err, errlen, "the batch's result is not a list (one result per item): %s", ex);
        return -1;
    }
    if (n != b->n_members) {
        snprintf(err, errlen, "the answer has %d result%s for a batch of %d", n, n == 1 ? "" : "s", b->n_members);
        return -1;
    }
    json_elements(t, strlen(t), take_element, el);
    return 0;
}

/* A batch's answer: each member gets its element, or fails with its element's "error". */
static void batch_done(const struct run *run, struct chain_req *b, const struct span *el)
{
    const struct stage *st = &run->p->stages[b->stage];
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        absorb(m, b);
        char *v = NULL, why[300], msg[200];
        if (st->error.text && eval_first(&st->error, el[i].p, el[i].n, &v, why, sizeof why) > 0) {
            message_of(v, msg, sizeof msg);
            free(v);
            settle(run, m, NULL, msg);
            continue;
        }
        char *t = strndup(el[i].p, el[i].n);
        cJSON *res = t ? cJSON_CreateRaw(t) : NULL;
        free(t);
        settle(run, m, res, res ? NULL : "out of memory for the answer");
    }
    b->n_members = 0;
    chain_req_free(b);
}

/* A batch the server answered with a final failure: each member goes again alone (to its item's
 * requeue, which chain_next gives out), so that one bad image does not fail the others. */
static void batch_split_up(struct chain_req *b)
{
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        absorb(m, b);
        m->alone = 1;
        m->failed_replica = b->failed_replica;
        m->next = m->it->requeue;
        m->it->requeue = m;
    }
    b->n_members = 0;
    chain_req_free(b);
}

/* Marks req's images as not at fault: no row, left to --resume. */
static void no_row(struct chain_req *req)
{
    if (!req->n_members)
        req->it->no_row = 1;
    for (int i = 0; i < req->n_members; i++)
        req->members[i]->it->no_row = 1;
}

enum chain_go chain_attempt_begin(const struct run *run, struct chain_req *req, double now)
{
    if (req->n_members) {
        if (batch_begin(run, req))
            return CHAIN_SETTLED;
    } else if (req->it->status == ITEM_FAILED) {
        /* A sibling failed: the item's row says so; the rest need not be sent. */
        settle(run, req, NULL, "not sent: an earlier request of this image failed");
        return CHAIN_SETTLED;
    } else if (run_stop_state(run) == RUN_ABORT) {
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
    if (req->n_members) {
        atomic_fetch_add_explicit(&run->shared->stage[req->stage].batch_sends, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&run->shared->stage[req->stage].batch_items, (uint64_t)req->n_members,
                                  memory_order_relaxed);
    }
    pick_replica(run, req, now);
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
    if (a->cc == CURLE_OK && a->status == 400 && a->body && memmem(a->body, a->len, "\"API_KEY_INVALID\"", 17))
        return 1; /* Google's APIs answer a wrong ?key= 400, with this ErrorInfo reason */
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
                           : a->status == 401 || a->status == 403 || a->status == 400
                               ? "check the stage's credentials (its headers, e.g. Authorization, or its key)"
                               : a->status == 404 ? "check the stage's url (and --server, which relative urls join)"
                                                  : "check the stage's url: the server refuses this method there";
        snprintf(sh->fatal_msg, sizeof sh->fatal_msg,
                 "%s: the server at %s answered %d requests in a row with %s: %s. Nothing was written for "
                 "those images; after the fix, run again with --resume",
                 st->name, st->shown_url ? st->shown_url : st->url, CHAIN_SETUP_FAILS, err, hint);
        atomic_store(&sh->fatal, 1);
    }
    run_abort(run);
}

/* 1 for a failed attempt of the kind a server that is down or restarting gives: no connection,
 * a reset, no answer, a timeout, or a 5xx other than 501 and 505 (which say "never"). */
static int outage_kind(const struct chain_answer *a)
{
    switch (a->cc) {
    case CURLE_OK:
        return a->status >= 500 && a->status != 501 && a->status != 505;
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return 1;
    default:
        return 0;
    }
}

/* Attempts that fail the outage way, in a row and from at least two requests, say the stage's
 * server is down: one image the server chokes on is not an outage, every request failing is. */
#define CHAIN_OUTAGE_ATTEMPTS 3
#define CHAIN_OUTAGE_REQUESTS 2

/* Feeds the outage detector with how an attempt of req ended. */
static void outage_note(const struct run *run, const struct chain_req *req, const struct chain_answer *a, int ok,
                        double now)
{
    struct shared_stage *d = &run->shared->stage[req->stage];
    if (ok || (a->cc == CURLE_OK && !outage_kind(a))) {
        /* An answer that is not an outage's: the server is up. */
        if (atomic_load_explicit(&d->fails_in_row, memory_order_relaxed)) {
            atomic_store(&d->fails_in_row, 0);
            atomic_store(&d->fail_reqs, 0);
            atomic_store(&d->last_fail_req, 0);
            atomic_store(&d->down_since_ms, 0);
        }
        return;
    }
    if (!outage_kind(a))
        return;
    uint64_t id = (req->it->seq + 1) << 24 ^ (uint64_t)req->stage << 16 ^ (uint64_t)(req->index + 1);
    int n = atomic_fetch_add(&d->fails_in_row, 1) + 1;
    int k = atomic_exchange(&d->last_fail_req, id) != id ? atomic_fetch_add(&d->fail_reqs, 1) + 1
                                                       : atomic_load(&d->fail_reqs);
    int64_t zero = 0;
    if (n >= CHAIN_OUTAGE_ATTEMPTS && k >= CHAIN_OUTAGE_REQUESTS)
        atomic_compare_exchange_strong(&d->down_since_ms, &zero, (int64_t)(now * 1000) | 1);
}

/* 1 while stage s is down and its --outage-timeout has not run out: its failed attempts are
 * then retried whatever their budget. */
static int in_outage(const struct run *run, int s, double now)
{
    int64_t since = atomic_load(&run->shared->stage[s].down_since_ms);
    return since && run->cfg->outage_timeout_s > 0 && now * 1000 - (double)since < run->cfg->outage_timeout_s * 1000.0;
}

double chain_down_for(const struct run *run, int stage, double now)
{
    int64_t since = atomic_load(&run->shared->stage[stage].down_since_ms);
    return since ? now - (double)since / 1000 : 0;
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
    long body_ra;
    enum chain_outcome o = chain_read_answer(&run->p->stages[req->stage], a, &result, &body_ra, err, sizeof err);
    struct span el[CHAIN_BATCH_ITEMS];
    if (o == OUTCOME_OK && req->n_members && batch_split(req, result, el, err, sizeof err)) {
        cJSON_Delete(result); /* the wrong number of results: a server fault, retried */
        result = NULL;
        o = OUTCOME_RETRY;
    }
    replica_note(run, req, a, o == OUTCOME_OK, now);
    int s = req->stage;
    if (a->cc == CURLE_OK && a->status == 401 && !req->reauth && run->p->stages[s].file_headers) {
        /* A token read from a file may have expired and been renewed there: read it again and,
         * if it changed, try once more at once. */
        req->reauth = 1;
        if (pipeline_refresh_headers(run->p, s, req->header_gen)) {
            cJSON_Delete(result);
            *retry_at = now;
            return CHAIN_RETRY;
        }
    }
    int setup = o == OUTCOME_FAIL && setup_error(a);
    outage_note(run, req, a, o == OUTCOME_OK, now);
    if (!setup && (a->cc == CURLE_OK || o == OUTCOME_OK))
        atomic_store(&run->shared->stage[s].answered, 1);
    if (o == OUTCOME_OK) {
        if (req->n_members) {
            batch_done(run, req, el);
            cJSON_Delete(result);
        } else {
            settle(run, req, result, NULL);
        }
        return CHAIN_DONE;
    }
    int setup_row = setup && !atomic_load(&run->shared->stage[s].answered);
    if (setup_row) {
        /* The server has never answered this stage as one that is set up for us: the image is
         * not at fault, so it gets no row (--resume will run it once the set-up is mended), and
         * a few such answers in a row stop the run. */
        no_row(req);
        if (atomic_fetch_add(&run->shared->stage[s].setup_fails, 1) + 1 >= CHAIN_SETUP_FAILS)
            stop_on_setup_error(run, s, a, err);
    }
    /* While the stage's server is down, its requests wait for it (probing with backoff) rather
     * than spend their retries: a restart costs time, not rows. */
    int waiting = o == OUTCOME_RETRY && outage_kind(a) && in_outage(run, s, now);
    if (o == OUTCOME_RETRY && a->cc == CURLE_OK && (a->status == 429 || a->status == 503) &&
        run->shared->lim[s].mode == LIMIT_AUTO && req->busy < CHAIN_BUSY_FREE)
        req->busy++; /* the adaptive limit went past the server's capacity: not the image's fault */
    if (o == OUTCOME_RETRY && (req->attempts - req->busy < chain_max_attempts(run, req->stage) || waiting) &&
        run_stop_state(run) != RUN_ABORT && !all_failed(req)) {
        long ra = body_ra > a->retry_after_s ? body_ra : a->retry_after_s;
        *retry_at = now + (double)chain_backoff_ms(run->cfg, req->attempts, ra, &req->rng) / 1e3;
        return CHAIN_RETRY;
    }
    int stopped = run_stop_state(run) == RUN_ABORT;
    if (o == OUTCOME_RETRY && stopped)
        no_row(req); /* it would have been retried: not the image's fault */
    if (req->n_members > 1 && o == OUTCOME_FAIL && a->cc == CURLE_OK && !setup && !stopped)
        batch_split_up(req); /* the server refused it, maybe for one of its images only */
    else if (req->n_members)
        batch_fail_all(run, req, err, 0);
    else
        settle(run, req, NULL, err);
    return CHAIN_FAIL;
}

size_t chain_req_body_len(const struct chain_req *req)
{
    return req->body.total;
}

size_t chain_req_read(struct chain_req *req, char *buf, size_t n)
{
    return filled_read(&req->body, &req->sent, buf, n);
}

/* Writes (write) or compares with what is there the pieces of f but the k-th, the ones before it
 * ending at start, the ones after it from end. Returns 1 when all are in place. */
static int around_in_place(const struct filled *f, int k, char *start, char *end, int write)
{
    char *at = start;
    for (int i = 0; i < f->n; i++) {
        if (i == k) {
            at = end;
            continue;
        }
        if (!f->pc[i].n)
            continue;
        if (write)
            memcpy(at, f->pc[i].p, f->pc[i].n);
        else if (memcmp(at, f->pc[i].p, f->pc[i].n))
            return 0;
        at += f->pc[i].n;
    }
    return 1;
}

const char *chain_req_whole(struct chain_req *req)
{
    struct item *it = req->it;
    const struct filled *f = &req->body;
    if (!it->b64 || !it->b64_slack || req->n_parts)
        return NULL;
    int k = 0;
    size_t head = 0;
    while (k < f->n && f->pc[k].p != it->b64) /* (an element's body points at r->el, never here) */
        head += f->pc[k++].n;
    if (k == f->n || f->pc[k].n != it->b64_len)
        return NULL;
    size_t tail = f->total - head - it->b64_len;
    if (head > it->b64_slack || tail > it->b64_slack)
        return NULL;
    char *start = it->b64 - head, *end = it->b64 + it->b64_len;
    if (!it->slack_users)
        around_in_place(f, k, start, end, 1);
    else if (!around_in_place(f, k, start, end, 0))
        return NULL; /* another request of the image is on the wire with other bytes there */
    it->slack_users++;
    return start;
}

void chain_req_whole_done(struct item *it)
{
    it->slack_users--;
}
