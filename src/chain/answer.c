/* answer: reading an answer, in one place (see chain_read_answer in chain.h). What an answer is
 * (its kind) is decided here once; retries (request.c), the endpoint's breakers, replicas and
 * limits (endpoint.h) all read that kind. */
#include "chain/chain_int.h"

#include "common/json.h"
#include "common/secrets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The one output of expression e (NULL: .result) on a checked answer, as Raw JSON text (the exact
 * bytes for a plain path); label names it in a reason ("result", "column"). 0, -1 with why (a
 * garbled answer), or EXPR_OVER_BUDGET. */
static int pick(const struct expr *e, const char *label, const char *body, size_t len, cJSON **out, char *err,
                size_t errlen)
{
    const struct json_path *path = e && e->plain ? &e->path : e ? NULL : &result_path;
    struct one_out o = {0};
    char why[300];
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
            snprintf(err, errlen, "\"%s\" %s%s", label, n < 0 ? "failed: " : "yielded nothing", n < 0 ? why : "");
            free(o.text);
            return n == EXPR_OVER_BUDGET ? EXPR_OVER_BUDGET : -1;
        }
        if (o.n > 1) {
            snprintf(err, errlen, "\"%s\" yielded %d values, not one (collect them with [...])", label, o.n);
            free(o.text);
            return -1;
        }
    }
    if (o.text)
        *out = cJSON_CreateRaw(o.text);
    free(o.text);
    if (!*out) {
        snprintf(err, errlen, "out of memory for the answer");
        return -1;
    }
    return 0;
}

int chain_parse_result(const struct stage *st, const char *body, size_t len, cJSON **result, char *err, size_t errlen)
{
    *result = NULL;
    char why[300];
    if (json_check(body, len, why, sizeof why)) {
        snprintf(err, errlen, "the answer is %s%s", strstr(why, "not JSON") == why ? "" : "not valid JSON: ", why);
        return -1;
    }
    return pick(st ? &st->result : NULL, "result", body, len, result, err, errlen);
}

int chain_parse_column(const struct stage *st, const char *body, size_t len, cJSON **column, char *err, size_t errlen)
{
    *column = NULL;
    if (!st || !st->column.text)
        return 0;
    return pick(&st->column, "column", body, len, column, err, errlen);
}

int chain_parse_answer(const char *body, size_t len, cJSON **result, char *err, size_t errlen)
{
    return chain_parse_result(NULL, body, len, result, err, errlen);
}

void chain_excerpt(const char *body, size_t len, char *out, size_t outlen)
{
    /* Scrubbed before the cut, so that a secret across it leaves no prefix behind. */
    char clean[CHAIN_EXCERPT + 1];
    size_t n = secrets_scrub_to(body, len, clean, sizeof clean), o = 0;
    for (size_t i = 0; i < n && o + 2 < outlen; i++) {
        unsigned char c = (unsigned char)clean[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
    }
    out[o] = 0;
}

int chain_eval_first(const struct expr *e, const char *body, size_t len, char **out, char *err, size_t errlen)
{
    struct one_out o = {0};
    *out = NULL;
    int n = expr_run(e, body, len, keep_output, &o, err, errlen);
    if (n < 0) {
        free(o.text);
        return n == EXPR_OVER_BUDGET ? EXPR_OVER_BUDGET : -1;
    }
    if (o.n == 0 || !o.text || !expr_text_truthy(o.text, o.len)) {
        free(o.text);
        return 0;
    }
    *out = o.text;
    return 1;
}

void chain_message_of(const char *text, char *out, size_t outlen)
{
    cJSON *v = text[0] == '"' ? cJSON_Parse(text) : NULL;
    const char *s = cJSON_GetStringValue(v);
    chain_excerpt(s ? s : text, strlen(s ? s : text), out, outlen);
    cJSON_Delete(v);
}


/* The kind of an attempt that got no HTTP answer (curl's code), with curl's reason in err. */
static enum answer_kind no_answer_kind(const struct chain_answer *a, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", a->curl_err && a->curl_err[0] ? a->curl_err : curl_easy_strerror(a->cc));
    if (a->no_room)
        return ANSWER_RETRY;
    switch (a->cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ANSWER_BUSY;
    case CURLE_COULDNT_CONNECT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return ANSWER_DOWN;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return ANSWER_RETRY;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
        return ANSWER_SETUP; /* a certificate that does not verify: no image will do better */
    default:
        return ANSWER_FINAL;
    }
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

/* The kind of a failed answer with an HTTP status: retried (busy, down or plain retry) or final
 * (a set-up error or this image's). */
static enum answer_kind status_kind(const struct chain_answer *a, int retry)
{
    long s = a->status;
    if (retry)
        return s == 429 || s == 503 ? ANSWER_BUSY : s >= 500 && s != 501 && s != 505 ? ANSWER_DOWN : ANSWER_RETRY;
    /* A wrong or missing token, a wrong path or method, whatever the image. Google's APIs answer
     * a wrong ?key= 400, with this ErrorInfo reason. */
    if (s == 401 || s == 403 || s == 404 || s == 405 ||
        (s == 400 && a->body && memmem(a->body, a->len, "\"API_KEY_INVALID\"", 17)))
        return ANSWER_SETUP;
    return ANSWER_FINAL;
}

/* What the failure expressions ("error", "retry_if", "retry_after") say about an answer. They read
 * JSON answers only: a proxy's HTML page is not the model's message. */
struct said {
    int failed, retry;
    int over;      /* an expression ran past its CPU-time budget: final, msg says which */
    char msg[300]; /* "error"'s message, or why it failed */
};

/* An expression of the stage ran past its budget (r is EXPR_OVER_BUDGET): the attempt fails
 * for good, named. Returns 1 then. */
static int over_budget(struct said *sd, int r, const char *name, const char *why)
{
    if (r != EXPR_OVER_BUDGET)
        return 0;
    snprintf(sd->msg, sizeof sd->msg, "\"%s\" failed: %.250s", name, why);
    sd->failed = sd->over = 1;
    sd->retry = 0;
    return 1;
}

static void read_failure(const struct stage *st, const struct chain_answer *a, int ok, struct said *sd,
                         long *retry_after_s)
{
    const char *body = a->body ? a->body : "";
    char why[300], *v = NULL;
    int has_exprs = st && (st->error.text || st->retry_if.text || st->retry_after.text);
    int json = has_exprs && json_check(body, a->len, why, sizeof why) == 0;
    sd->failed = !ok;
    sd->retry = !ok && retried_status(st, a->status);
    sd->over = 0;
    sd->msg[0] = 0;
    if (json && st->error.text && !(ok && st->batch_size)) { /* a batch's: read on each element */
        int r = chain_eval_first(&st->error, body, a->len, &v, why, sizeof why);
        if (over_budget(sd, r, "error", why))
            return;
        if (r > 0) {
            chain_message_of(v, sd->msg, sizeof sd->msg);
            if (!sd->msg[0]) /* an empty message still fails the answer: say what did */
                snprintf(sd->msg, sizeof sd->msg, "\"error\" gave %.100s", v);
            sd->failed = 1;
        } else if (r < 0 && !ok) {
            snprintf(sd->msg, sizeof sd->msg, "(\"error\" failed: %.150s)", why);
        }
        free(v);
    }
    if (sd->failed && json && st->retry_if.text) {
        int r = chain_eval_first(&st->retry_if, body, a->len, &v, why, sizeof why);
        free(v);
        if (over_budget(sd, r, "retry_if", why))
            return;
        if (r > 0)
            sd->retry = 1;
    }
    int r = sd->failed && sd->retry && json && st->retry_after.text
                ? chain_eval_first(&st->retry_after, body, a->len, &v, why, sizeof why)
                : 0;
    if (over_budget(sd, r, "retry_after", why))
        return;
    if (r > 0) {
        cJSON *n = cJSON_Parse(v);
        double secs = cJSON_IsNumber(n) ? n->valuedouble : cJSON_IsString(n) ? strtod(n->valuestring, NULL) : -1;
        if (secs >= 0)
            *retry_after_s = secs > 86400 ? 86400 : (long)ceil(secs);
        cJSON_Delete(n);
        free(v);
    }
}

/* A non-2xx answer's reason: its status, where a redirect points, and the model's message or an
 * excerpt of the body. */
static void status_reason(const struct chain_answer *a, const char *msg, char *err, size_t errlen)
{
    char ex[96];
    chain_excerpt(a->body ? a->body : "", a->len, ex, sizeof ex);
    const char *shown = msg[0] ? msg : ex;
    char to[301]; /* a redirect's target, scrubbed before its cut (a key in the URL comes back in it) */
    if (a->status >= 300 && a->status < 400 && a->location) { /* annotate does not follow redirects */
        secrets_scrub_to(a->location, strlen(a->location), to, sizeof to);
        snprintf(err, errlen, "HTTP %ld to %s (point the stage's url there)%s%s", a->status, to, shown[0] ? ": " : "",
                 shown);
    } else {
        snprintf(err, errlen, "HTTP %ld%s%s", a->status, shown[0] ? ": " : "", shown);
    }
}

static enum answer_kind read_answer(const struct stage *st, const struct chain_answer *a, cJSON **result,
                                    long *retry_after_s, char *err, size_t errlen)
{
    *result = NULL;
    *retry_after_s = -1;
    if (a->cc != CURLE_OK)
        return no_answer_kind(a, err, errlen);
    int ok = a->status >= 200 && a->status <= 299;
    struct said sd;
    read_failure(st, a, ok, &sd, retry_after_s);
    if (sd.over) { /* the pipeline's expression, not the answer: no other attempt will do better */
        snprintf(err, errlen, "%s", sd.msg);
        return ANSWER_FINAL;
    }
    if (!ok) {
        status_reason(a, sd.msg, err, errlen);
        return status_kind(a, sd.retry);
    }
    if (sd.failed) { /* a 2xx that says it failed */
        snprintf(err, errlen, "%s", sd.msg);
        return sd.retry ? ANSWER_RETRY : ANSWER_FINAL;
    }
    char why[300];
    int parsed = chain_parse_result(st, a->body ? a->body : "", a->len, result, why, sizeof why);
    if (parsed == EXPR_OVER_BUDGET) {
        snprintf(err, errlen, "%s", why);
        return ANSWER_FINAL;
    }
    if (parsed) {
        char ex[96];
        chain_excerpt(a->body ? a->body : "", a->len, ex, sizeof ex);
        snprintf(err, errlen, "%s: %s", why, ex);
        return ANSWER_RETRY; /* garbled: a server fault */
    }
    return ANSWER_OK;
}

enum answer_kind chain_read_answer(const struct stage *st, const struct chain_answer *a, cJSON **result,
                                   long *retry_after_s, char *err, size_t errlen)
{
    enum answer_kind k = read_answer(st, a, result, retry_after_s, err, errlen);
    if (k != ANSWER_OK) /* the one place an answer's reason is made: no secret leaves it */
        secrets_scrub(err, errlen);
    return k;
}

enum answer_kind chain_outcome(const struct chain_answer *a, cJSON **result, char *err, size_t errlen)
{
    long ra;
    return chain_read_answer(NULL, a, result, &ra, err, errlen);
}
