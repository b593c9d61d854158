/* http: see http.h. */
#include "drivers/http.h"
#include "version.h"
#include "flow/budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bytes of --max-memory a buffer of cap bytes holds. */
static uint64_t charge_of(size_t cap)
{
    return cap > HTTP_ANSWER_FREE ? (uint64_t)cap - HTTP_ANSWER_FREE : 0;
}

/* Waits (the blocking driver) for room for n more bytes of the answer: 0 when counted, -1 when
 * the attempt's time is up or the run is aborted first (a drain lets it finish). */
static int wait_for_room(struct http_buf *b, uint64_t n)
{
    while (budget_answer_grow(n, &b->token)) {
        double left = b->deadline - now_s();
        if (left <= 0 || (b->run && run_stop_state(b->run) == RUN_ABORT))
            return -1;
        budget_answer_wait(left < 0.2 ? left : 0.2);
        if (b->run && b->run->alive)
            b->run->alive(b->run); /* a worker process tells its parent it is not stuck */
    }
    return 0;
}

/* Takes the budget a buffer of cap bytes needs: 0; 1 when the transfer is to pause; -1 when the
 * answer is refused (refused = 3). */
static int room_for(struct http_slot *slot, size_t cap)
{
    struct http_buf *b = &slot->resp;
    uint64_t want = charge_of(cap);
    if (want <= b->charged)
        return 0;
    uint64_t n = want - b->charged;
    if (slot->pause_list ? budget_answer_grow(n, &b->token) == 0 : wait_for_room(b, n) == 0) {
        b->charged = want;
        return 0;
    }
    if (!slot->pause_list) {
        b->refused = 3;
        return -1;
    }
    b->paused = 1;
    if (!slot->listed) {
        slot->next_paused = *slot->pause_list;
        *slot->pause_list = slot;
        slot->listed = 1;
    }
    return 1;
}

/* An answer larger than --max-answer-bytes fails the attempt: a misbehaving server must not
 * make us allocate until the timeout. Growing past HTTP_ANSWER_FREE draws on --max-memory. */
static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    struct http_slot *slot = userp;
    struct http_buf *b = &slot->resp;
    size_t len = size * n;
    if (b->len + len > b->limit) {
        b->refused = 1;
        return 0; /* curl stops the transfer with a write error; http_answer says why */
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + len + 1 > cap)
            cap *= 2;
        int room = room_for(slot, cap);
        if (room)
            return room > 0 ? CURL_WRITEFUNC_PAUSE : 0;
        char *nd = realloc(b->data, cap);
        if (!nd) {
            b->refused = 2;
            return 0; /* curl reports a write error: the attempt fails, the run goes on */
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return len;
}

void http_answer_release(struct http_slot *slot)
{
    struct http_buf *b = &slot->resp;
    b->paused = 0;
    if (b->cap > HTTP_ANSWER_FREE) {
        free(b->data);
        b->data = NULL;
        b->cap = b->len = 0;
    }
    if (b->charged || b->token)
        budget_answer_give(b->charged, &b->token);
    b->charged = 0;
}

void http_resume_paused(struct http_slot **list)
{
    struct http_slot *s = *list;
    *list = NULL; /* those that pause again are listed anew */
    while (s) {
        struct http_slot *next = s->next_paused;
        s->listed = 0;
        if (s->resp.paused) {
            s->resp.paused = 0;
            curl_easy_pause(s->h, CURLPAUSE_CONT); /* (on_write runs again in here) */
        }
        s = next;
    }
}

static size_t on_read(char *buf, size_t size, size_t n, void *userp)
{
    return chain_req_read(userp, buf, size * n);
}

static int on_seek(void *userp, curl_off_t offset, int origin)
{
    struct chain_req *req = userp;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > chain_req_body_len(req))
        return CURL_SEEKFUNC_CANTSEEK;
    req->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_part_read(char *buf, size_t size, size_t n, void *arg)
{
    struct http_part *p = arg;
    return filled_read(p->f, &p->pos, buf, size * n);
}

static int on_part_seek(void *arg, curl_off_t offset, int origin)
{
    struct http_part *p = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > p->f->total)
        return CURL_SEEKFUNC_CANTSEEK;
    p->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Lets go of what the last attempt on the slot used besides the handle. */
static void slot_release(struct http_slot *s)
{
    if (s->mime) {
        curl_easy_setopt(s->h, CURLOPT_MIMEPOST, NULL);
        curl_mime_free(s->mime);
        s->mime = NULL;
    }
    curl_slist_free_all(s->req_headers);
    s->req_headers = NULL;
}

/* The form's parts on a new curl_mime. Returns 0, or -1 when out of memory. */
static int build_form(struct http_slot *slot, const struct stage *st, struct chain_req *req)
{
    if (slot->n_part < req->n_parts) {
        struct http_part *np = realloc(slot->part, (size_t)req->n_parts * sizeof *np);
        if (!np)
            return -1;
        slot->part = np;
        slot->n_part = req->n_parts;
    }
    if (!(slot->mime = curl_mime_init(slot->h)))
        return -1;
    const char *slash = strrchr(req->it->path, '/');
    const char *fname = slash ? slash + 1 : req->it->path;
    for (int k = 0; k < req->n_parts; k++) {
        const struct form_part *fp = &st->body.parts[k];
        curl_mimepart *part = curl_mime_addpart(slot->mime);
        slot->part[k] = (struct http_part){&req->parts[k], 0};
        if (!part || curl_mime_name(part, fp->name) != CURLE_OK ||
            curl_mime_data_cb(part, (curl_off_t)req->parts[k].total, on_part_read, on_part_seek, NULL,
                              &slot->part[k]) != CURLE_OK)
            return -1;
        if (fp->file && (curl_mime_filename(part, fname) != CURLE_OK || curl_mime_type(part, req->mime) != CURLE_OK))
            return -1;
    }
    return 0;
}

static int on_prereq(void *userp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    struct chain_req *req = userp;
    req->sends++;
    return CURL_PREREQFUNC_OK;
}

int http_slot_init(struct http_slot *s)
{
    memset(s, 0, sizeof *s);
    s->h = curl_easy_init();
    return s->h ? 0 : -1;
}

void http_slot_free(struct http_slot *s)
{
    if (!s)
        return;
    slot_release(s);
    curl_easy_cleanup(s->h);
    free(s->part);
    http_answer_release(s);
    free(s->resp.data);
    free(s->body.data);
    s->part = NULL;
    s->n_part = 0;
    s->h = NULL;
    s->resp.data = s->body.data = NULL;
}

/* The stage's headers as they are now (their generation is noted on the ticket, for a 401's
 * re-read); a raw body adds the image's own type, unless the stage names one. */
static const struct curl_slist *request_headers(struct http_slot *slot, const struct stage *st, struct chain_req *req)
{
    const struct curl_slist *headers = pipeline_headers(st, &req->tk.header_gen);
    if (!st->type_of_image)
        return headers;
    char ct[96];
    snprintf(ct, sizeof ct, "Content-Type: %s", req->mime ? req->mime : "application/octet-stream");
    struct curl_slist *l = NULL;
    for (const struct curl_slist *c = headers; c; c = c->next)
        if (!(l = curl_slist_append(slot->req_headers = l, c->data)))
            break;
    if (l && (l = curl_slist_append(l, ct)))
        headers = slot->req_headers = l;
    /* else out of memory: the stage's own list (the server will say what it misses) */
    return headers;
}

/* The body on the handle (see http_prepare in http.h): a form's parts, a small body whole (in
 * place, or assembled), or a large one streamed. */
static void put_body(struct http_slot *slot, const struct stage *st, struct chain_req *req)
{
    CURL *h = slot->h;
    if (st->body.kind == BODY_FORM && build_form(slot, st, req) == 0) {
        curl_easy_setopt(h, CURLOPT_MIMEPOST, slot->mime);
        return;
    }
    /* (a form whose parts cannot be made for want of memory goes out empty, and the server's
     * answer says so) */
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    size_t blen = chain_req_body_len(req);
    struct http_buf *b = &slot->body;
    const char *whole = blen <= HTTP_SMALL_BODY ? chain_req_whole(req) : NULL;
    if (!whole && blen <= HTTP_SMALL_BODY && !b->data && (b->data = malloc(HTTP_SMALL_BODY + 1)))
        b->cap = HTTP_SMALL_BODY + 1;
    if (whole) {
        slot->whole = req->it; /* until http_answer */
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, whole);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    } else if (blen <= HTTP_SMALL_BODY && b->data) { /* else streamed: out of memory for the buffer */
        b->len = chain_req_read(req, b->data, blen);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, b->data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
    } else {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, req);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, req);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
}

void http_prepare(struct http_slot *slot, const struct run *run, struct chain_req *req)
{
    CURL *h = slot->h;
    struct http_buf *resp = &slot->resp;
    char *errbuf = slot->errbuf;
    const struct config *cfg = run->cfg;
    const struct stage *st = &run->p->stages[req->stage];
    long timeout = st->timeout_ms > 0 ? st->timeout_ms : cfg->timeout_ms;
    resp->len = 0;
    resp->refused = 0;
    resp->limit = chain_answer_cap(run, req); /* a batch's: the cap for each of its images */
    resp->images = req->n_members > 1 ? req->n_members : 1;
    resp->paused = 0;
    resp->deadline = now_s() + (double)timeout / 1e3;
    resp->run = run;
    if (resp->data)
        resp->data[0] = 0;
    errbuf[0] = 0;
    slot->whole = NULL;
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, req);
    curl_easy_setopt(h, CURLOPT_URL, pipeline_replica_url(st, req->tk.replica, 0));
    slot_release(slot);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, request_headers(slot, st, req));
    put_body(slot, st, req);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, slot);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PRIVATE, req);
    /* Servers' access logs name the client; a User-Agent header the stage sets replaces this. */
    curl_easy_setopt(h, CURLOPT_USERAGENT, "annotate/" ANNOTATE_VERSION);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 65536L);
    if (cfg->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (cfg->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->cacert);
}

long http_retry_after(CURL *h)
{
    curl_off_t ra = -1;
    if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
        return -1;
    return (long)ra;
}

void http_answer(struct http_slot *slot, CURLcode cc, struct chain_answer *a)
{
    if (slot->whole) {
        chain_req_whole_done(slot->whole);
        slot->whole = NULL;
    }
    a->cc = cc;
    a->status = 0;
    curl_easy_getinfo(slot->h, CURLINFO_RESPONSE_CODE, &a->status);
    a->body = slot->resp.data ? slot->resp.data : "";
    a->len = slot->resp.len;
    a->curl_err = slot->errbuf;
    a->retry_after_s = http_retry_after(slot->h);
    if (cc == CURLE_WRITE_ERROR && slot->resp.refused == 1 && slot->resp.images > 1)
        snprintf(slot->errbuf, sizeof slot->errbuf,
                 "the answer is larger than --max-answer-bytes for each of its %d images (%zu bytes)",
                 slot->resp.images, slot->resp.limit);
    else if (cc == CURLE_WRITE_ERROR && slot->resp.refused == 1)
        snprintf(slot->errbuf, sizeof slot->errbuf, "the answer is larger than --max-answer-bytes (%zu bytes)",
                 slot->resp.limit);
    else if (cc == CURLE_WRITE_ERROR && slot->resp.refused == 2)
        snprintf(slot->errbuf, sizeof slot->errbuf, "out of memory for the answer");
    a->no_room = cc == CURLE_WRITE_ERROR && slot->resp.refused == 3;
    if (a->no_room) /* other answers held --max-memory for the whole attempt: worth another */
        snprintf(slot->errbuf, sizeof slot->errbuf,
                 "no room for the answer within --max-memory for the attempt's timeout (other answers held it)");
    slot->resp.paused = 0;
    a->location = NULL;
    char *loc = NULL;
    if (a->status >= 300 && a->status < 400 && curl_easy_getinfo(slot->h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK)
        a->location = loc;
}
