/* settle: the end of a request, the one place where it stops counting as in flight (see
 * chain_settle in chain_int.h), and the one setter of a stage's state. Every other file of the
 * chain comes here to finish a request. */
#include "chain/chain_int.h"
#include "chain/memo.h"

#include <stdlib.h>

void chain_set_state(struct item *it, int s, enum stage_state state)
{
    it->state[s] = (unsigned char)state;
}

void chain_req_free(struct chain_req *req)
{
    if (!req)
        return;
    memo_release(req); /* freed unsettled: its question is given back */
    cJSON_Delete(req->column);
    filled_free(&req->body);
    for (int i = 0; i < req->n_parts; i++)
        filled_free(&req->parts[i]);
    free(req->parts);
    free(req->el);
    free(req->el_bytes);
    for (int i = 0; i < req->n_members; i++)
        chain_req_free(req->members[i]);
    free(req->members);
    chain_cut_free(req->cut);
    free(req);
}

void chain_cut_free(struct chain_cut *c)
{
    if (!c)
        return;
    for (int i = 0; c->out && i < c->n; i++)
        prep_result_free(&c->out[i]);
    free(c->out);
    free(c->rects);
    free(c);
}

/* A stage that sends the image (or a prepared copy of it) keeps it while it has yet to run or is
 * running (a retry re-sends it); a crop stage keeps the file's bytes until it has been cut. */
void chain_release(const struct pipeline *p, struct item *it)
{
    if (it->status == ITEM_FAILED) {
        if (it->in_flight == 0) /* a sibling still in curl may be reading its body from it */
            item_drop_payload(it);
        return;
    }
    int original = 0, cut = it->cutting > 0;
    uint64_t copies = 0;
    for (int s = 0; s < p->n; s++) {
        const struct stage *st = &p->stages[s];
        int pending = it->state[s] == ST_WAITING || it->state[s] == ST_RUNNING;
        if (st->input == INPUT_IMAGE && pending && st->spec < 0)
            original = 1;
        else if (st->input == INPUT_IMAGE && pending)
            copies |= 1ull << st->spec;
        cut |= st->crop && it->state[s] == ST_WAITING;
    }
    if (!original && !cut)
        item_drop_original(it);
    if (!cut)
        item_drop_cut_charge(it);
    for (int k = 0; k < it->n_copies; k++)
        if (!(copies >> k & 1))
            item_drop_copy(it, k);
}

/* A request of stage s failed for good. A stage's failure leaves the item's other stages going,
 * so that which stages answered (and so the row) does not depend on timing; an item that is
 * failing as a whole (no row: the set-up is wrong, the run is torn down) fails at once. */
static void record_failure(const struct stage *st, struct chain_req *req, const char *err)
{
    struct item *it = req->it;
    char where[160];
    if (st->input == INPUT_EACH)
        snprintf(where, sizeof where, "%s[%d]", st->name, req->index);
    else
        snprintf(where, sizeof where, "%s", st->name);
    const char *s_ = req->attempts == 1 ? "" : "s";
    if (it->no_row || it->status == ITEM_FAILED)
        item_fail(it, "%s: %s (after %d attempt%s)", where, err, req->attempts, s_);
    else
        item_stage_fail(it, req->stage, req->index, !req->retryable, "%s: %s (after %d attempt%s)", where, err,
                        req->attempts, s_);
    cJSON_Delete(it->results[req->stage]); /* a failed stage has no cell, whatever else came back */
    cJSON_Delete(it->cells[req->stage]);
    it->results[req->stage] = it->cells[req->stage] = NULL;
    chain_set_state(it, req->stage, ST_FAILED);
}

cJSON *chain_null_list(int n)
{
    cJSON *l = cJSON_CreateArray();
    for (int i = 0; l && i < n; i++) {
        cJSON *v = cJSON_CreateNull();
        if (!v || !cJSON_AddItemToArray(l, v)) {
            cJSON_Delete(v);
            cJSON_Delete(l);
            return NULL;
        }
    }
    return l;
}

/* The request's column (its stage's "column") into the item's cell: an "each" stage's cell is a
 * list, one per element as its results are (null until its answer comes). */
static void keep_column(const struct stage *st, struct item *it, struct chain_req *req)
{
    int s = req->stage;
    if (!req->column)
        return;
    if (st->input != INPUT_EACH) {
        it->cells[s] = req->column;
        req->column = NULL;
        return;
    }
    if (!it->cells[s] && !(it->cells[s] = chain_null_list(cJSON_GetArraySize(it->results[s])))) {
        item_fail(it, "%s: out of memory for its column", st->name);
        return;
    }
    if (cJSON_ReplaceItemInArray(it->cells[s], req->index, req->column))
        req->column = NULL;
}

/* The item's part of a request's end: its result in place, or its stage failed with err. */
static void record(const struct stage *st, struct chain_req *req, cJSON *result, const char *err)
{
    struct item *it = req->it;
    int s = req->stage;
    if (!result) {
        record_failure(st, req, err);
    } else if (it->status == ITEM_FAILED || it->state[s] == ST_FAILED) {
        cJSON_Delete(result);
    } else {
        item_charge_result(it, result); /* (a large one counts in --max-memory while kept) */
        if (st->input == INPUT_EACH)
            cJSON_ReplaceItemInArray(it->results[s], req->index, result);
        else
            it->results[s] = result;
        keep_column(st, it, req);
        if (it->outstanding[s] == 0)
            chain_set_state(it, s, ST_DONE);
    }
}

void chain_settle(const struct run *run, struct chain_req *req, cJSON *result, const char *err)
{
    const struct pipeline *p = run->p;
    struct item *it = req->it;
    int s = req->stage;
    endpoint_cancel(run, &req->tk); /* (holds nothing once the attempt has ended) */
    memo_settled(run, req, result); /* an ok answer goes to the store (--cache), its twins wake */
    it->in_flight--;
    it->outstanding[s]--;
    if (req->attempts > 0)
        it->requests++; /* one cancelled before it was sent is no request: retries = attempts - requests */
    it->attempts += (uint32_t)req->attempts;
    if (req->t_end > 0)
        item_log_request(it, s, (uint32_t)((req->t_end - req->t_first) * 1e6), req->attempts);
    record(&p->stages[s], req, result, err);
    chain_release(p, it);
    chain_req_free(req);
}

