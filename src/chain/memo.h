/* memo: the answer store of --cache (results/store.h) in a run: never ask a server a question
 * whose answer the store holds, nor one that another request is asking right now. The chain's
 * side of it (chain.h: chain_memo_look and the waits) is in memo.c with what follows.
 *
 * What a question is. A request's key (store.h) is its stage's identity and the bytes it would
 * send, piece by piece as its body was filled (template.h): fixed text, earlier results as filled
 * in, an "each" element, the index, the path or name where the body sends them; the image as the
 * digest of its file (item.h's digest, taken once by the load stage, on the loader's threads), a
 * prepared copy ("image") or a crop by its own bytes (they are not the file's);
 * a form part by part, each as its name then its value (a file part with the file name and type
 * it is sent with); a raw body with the type it is sent as. So a copy of an image under another
 * name is the same question, unless its body sends the name.
 *
 * A stage's identity (memo_ident) is what decides its answer besides the request: the resolved
 * URL (the first replica: replicas are one model; ${VAR} expanded, so a token in a URL is part
 * of it and a new one asks again), the compiled body, form or seed template (with the seed's
 * "fields"; a reference to an earlier stage as a reference, its result being in the key), the
 * "input", the "result" and "error" expressions and the "version". Not the name (a renamed stage
 * keeps its answers), the headers (tokens change), timeouts, retries, limits, "when" or the batch
 * size. Its description in the store is the name, the URL as shown (${VAR} unexpanded) and the
 * version: never a secret.
 *
 * What is stored: a stage's result of an ok answer, byte for byte as the row would hold it, put
 * when the request settles (a batch's member: its element). Failures, garbled answers and answers
 * an "error" expression refused are never stored.
 *
 * Questions on the wire. A registry in the run's shared page (shared.h: struct shared_memo) holds
 * the keys being asked, so that copies wait for one answer in every strategy: threads and event
 * loops of the parent, and worker processes, which all map the page. The lookups live where the
 * requests are made: in the process that queries (the parent's threads or loops, or each worker
 * process, which opens the store itself: WAL lets processes share the file, and the image's
 * digest is taken where the image is read). A claimer whose waiters are in another process
 * commits its answer before it gives the question back, so that they find it in the file; a
 * waiter finds a claim left by a worker that died and takes it over. The registry holds 4096
 * questions: past three quarters full a request asks without a claim (its copies may then ask
 * too). A table mutex left by a process that died wipes the table: every waiter looks again.
 *
 * An identity with no answer in the store when the run starts can only hit on what this run
 * puts: the store is asked only for the keys this run has put (a Bloom filter of 2^26 bits in
 * the shared page, 4 a key: under 1 in 10,000 false "maybe"s at a million keys, 8% at 12 million,
 * each then one lookup that misses), so a first run's misses cost no lookup. A copy is found
 * through the registry while its twin is in flight, and in the store once its twin's answer is
 * put; a worker process's answer stays in the registry (done) until its store has committed it,
 * so another worker's copy waits for the commit rather than miss it. Two runs that share a store
 * and start on an identity new to it do not see each other's puts: each asks its own questions,
 * duplicates, never a wrong answer (a run started later sees what was committed before).
 *
 * Counted per stage in the shared page: hits (answered from the store) and misses (asked of the
 * server); each request once, whatever its retries; a batch's members each. A store that turns
 * itself off (store.h) is told once on stderr for the whole run, and the run goes on without it. */
#ifndef ANNOTATE_MEMO_H
#define ANNOTATE_MEMO_H

#include <stddef.h>
#include "chain/chain.h"
#include "pipeline/pipeline.h"
#include "results/store.h"
#include "run.h"

struct memo;

/* The store of run->cfg->cache for run (its pipeline resolved, its shared page mapped). The
 * parent (worker 0) sets up the registry; a worker process (worker 1, with its share of --workers)
 * opens the file for itself with a smaller page cache. NULL and err[0] == 0 without --cache;
 * NULL with err when the file cannot be a store (not SQLite, another program's, a folder, a
 * folder that does not exist: a set-up error). A store that cannot be written is opened off, told
 * once, and the run goes on. */
struct memo *memo_open(const struct run *run, int worker, char *err, size_t errlen);

/* Commits what is left and closes; tells the store's failure if nobody has yet. NULL is a no-op. */
void memo_close(struct memo *m);

/* Stage s's identity (see above): 0, or -1 when it cannot be computed (the store is then not
 * used for the stage). Its URL must be resolved (pipeline_resolve or pipeline_resolve_urls). */
int memo_ident(const struct pipeline *p, int s, struct store_ident *id);

/* The stage identities of the pipeline file at path, its relative URLs joined to server (NULL:
 * the run's default), as a run computes them: annotate cache prune --keep-pipelines (the hook of
 * results/cache_cmd.h; ud unused). *ids malloc'd, *n of them. 0, or -1 with err. */
int memo_pipeline_idents(void *ud, const char *path, const char *server, struct store_ident **ids, int *n,
                         char *err, size_t errlen);

/* The settling of a request with --cache: its ok result put in the store (not one it was
 * answered from), then its question given back and its waiters woken. result NULL: a failure.
 * (chain_settle calls it.) */
void memo_settled(const struct run *run, struct chain_req *req, const cJSON *result);

/* Gives back req's claim, if it holds one (chain_req_free: a request freed unsettled). */
void memo_release(struct chain_req *req);

#endif
