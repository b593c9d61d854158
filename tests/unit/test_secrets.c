/* Suites "secrets unit" and "secrets concurrent": the registry of a run's secrets and its scrub
 * (src/common/secrets.h), in this process: every form of a value replaced, the longest match
 * first, values too short to keep, a cut that never leaves a prefix, credential headers,
 * excerpts of answers cut after the scrub, S3's text, and scrubs while a 401 registers a new
 * token from other threads. */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "common/secrets.h"
#include "sources/s3int.h"

#include "check.h"

static void scrub_expect(const char *in, const char *want)
{
    char out[512];
    secrets_scrub_to(in, strlen(in), out, sizeof out);
    CHECKF(!strcmp(out, want), "scrub of \"%s\": \"%s\", want \"%s\"", in, out, want);
}

static void test_forms(void)
{
    secrets_clear();
    scrub_expect("nothing registered: text as it is", "nothing registered: text as it is");
    secrets_add("s3cr/t\"k+y=", 11);
    scrub_expect("a s3cr/t\"k+y= b", "a [secret] b");
    scrub_expect("json {\"t\":\"s3cr\\/t\\\"k+y=\"}", "json {\"t\":\"[secret]\"}");
    scrub_expect("json {\"t\":\"s3cr/t\\\"k+y=\"}", "json {\"t\":\"[secret]\"}");
    scrub_expect("url ?key=s3cr%2Ft%22k%2By%3D&x=1", "url ?key=[secret]&x=1");
    scrub_expect("twice s3cr/t\"k+y=s3cr/t\"k+y=", "twice [secret][secret]");
    scrub_expect("a prefix s3cr/t\"k+y only", "a prefix s3cr/t\"k+y only");
    /* a reason scrubbed twice stays as it was, even when "secret" is one */
    secrets_add("secret", 6);
    scrub_expect("a [secret] secret", "a [secret] [secret]");
    /* too short to keep: ordinary text stays as it is */
    secrets_add("abc", 3);
    scrub_expect("abc abcd", "abc abcd");
    CU_ASSERT_EQUAL(secrets_count(), 5); /* the value, its two JSON forms, its URL form; "secret" */
    secrets_add("s3cr/t\"k+y=", 11);  /* again: nothing new */
    CU_ASSERT_EQUAL(secrets_count(), 5);
    secrets_clear();
    CU_ASSERT_EQUAL(secrets_count(), 0);
    scrub_expect("s3cr/t\"k+y=", "s3cr/t\"k+y=");
}

/* The longest match wins where two overlap; a header line's credentials are kept with and
 * without their scheme; a name that carries no credential is not kept. */
static void test_credential_headers(void)
{
    secrets_clear();
    secrets_add_credential_header("Authorization: Bearer abcdef123456");
    secrets_add_credential_header("X-Api-Key:   k3y-v4lue  ");
    secrets_add_credential_header("X-Team: vision-team");
    secrets_add_credential_header("Content-Type: application/json");
    scrub_expect("Authorization: Bearer abcdef123456", "Authorization: [secret]");
    scrub_expect("token abcdef123456 refused", "token [secret] refused");
    scrub_expect("key=k3y-v4lue", "key=[secret]");
    scrub_expect("vision-team application/json", "vision-team application/json");
    secrets_clear();
}

/* A cut (a full buffer) replaces a secret whole or leaves it out: never its first bytes. */
static void test_cut(void)
{
    secrets_clear();
    secrets_add("0123456789abcdef", 16);
    char out[16];
    const char *in = "xxxxxxxx0123456789abcdef tail";
    for (size_t cap = 1; cap <= sizeof out; cap++) {
        size_t n = secrets_scrub_to(in, strlen(in), out, cap);
        CHECKF(n == strlen(out) && n < cap, "cap %zu: %zu bytes", cap, n);
        CHECKF(!strstr(out, "0123"), "cap %zu: \"%s\" holds a prefix of the secret", cap, out);
    }
    /* cut by someone else, marked with "...": jq quotes a value so */
    scrub_expect("Cannot iterate over string (\"0123456789...)", "Cannot iterate over string (\"[secret])");
    scrub_expect("short prefix 01234... and 0123 stay", "short prefix 01234... and 0123 stay");
    /* in place, growing: cut to the buffer */
    secrets_add("wxyz", 4);
    char buf[12] = "a wxyz wxyz";
    secrets_scrub(buf, sizeof buf);
    CHECKF(!strcmp(buf, "a [secret] "), "in place: \"%s\"", buf);
    secrets_clear();
}

/* An answer's excerpt and a redirect's target, as chain_read_answer makes a reason: a secret
 * across the excerpt's cut at 80 bytes leaves nothing of itself. */
static void test_answer_reasons(void)
{
    secrets_clear();
    const char *tok = "T0KEN-0123456789-abcdefghij";
    secrets_add(tok, strlen(tok));
    char body[256];
    snprintf(body, sizeof body, "{\"error\":\"denied\",\"pad\":\"%030d\",\"auth\":\"Bearer %s\"}", 0, tok);
    CU_ASSERT(strstr(body, tok) - body < 80 && strstr(body, tok) - body + (long)strlen(tok) > 80);
    struct chain_answer a = {.cc = CURLE_OK, .status = 400, .body = body, .len = strlen(body)};
    cJSON *res;
    char err[512];
    CU_ASSERT_EQUAL(chain_outcome(&a, &res, err, sizeof err), ANSWER_FINAL);
    CHECKF(!strstr(err, "T0KE") && strstr(err, "HTTP 400: "), "excerpt: %s", err);
    char loc[128];
    snprintf(loc, sizeof loc, "https://h/v1/images:annotate?key=%s", tok);
    struct chain_answer r = {.cc = CURLE_OK, .status = 301, .body = "", .len = 0, .location = loc};
    chain_outcome(&r, &res, err, sizeof err);
    CHECKF(!strstr(err, "T0KE") && strstr(err, "key=[secret]"), "redirect: %s", err);
    /* an ok answer's result is the server's bytes */
    char ok[128];
    snprintf(ok, sizeof ok, "{\"result\":\"%s\"}", tok);
    struct chain_answer o = {.cc = CURLE_OK, .status = 200, .body = ok, .len = strlen(ok)};
    CU_ASSERT_EQUAL_FATAL(chain_outcome(&o, &res, err, sizeof err), ANSWER_OK);
    CHECKF(strstr(res->valuestring, tok) != NULL, "ok result: %s", res->valuestring);
    cJSON_Delete(res);
    secrets_clear();
}

/* S3's text: the run's secrets, and any signature (64 hex digits), even across the cut. */
static void test_s3_text(void)
{
    secrets_clear();
    secrets_add("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 40);
    const char *sig = "Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";
    char msg[512], out[96];
    snprintf(msg, sizeof msg, "denied: %s secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", sig);
    s3_printable(out, sizeof out, msg, strlen(msg));
    CHECKF(!strstr(out, "fe5f80f7") && !strstr(out, "wJalr") && strstr(out, "Signature=[secret]"), "S3: %s", out);
    s3_printable(out, 40, msg, strlen(msg)); /* cut inside the signature */
    CHECKF(!strstr(out, "fe5f"), "S3, cut: %s", out);
    s3_printable(out, sizeof out, "NoSuchBucket deadbeef", 21); /* short hex runs stay */
    CHECKF(!strcmp(out, "NoSuchBucket deadbeef"), "S3: %s", out);
    secrets_clear();
}

/* Random texts made of pieces of random secrets (overlapping, repeated, cut) and random bytes,
 * scrubbed into buffers of random sizes: the uncut output never holds a secret, a cut output is
 * the start of the uncut one (so no secret is cut in two), and it always fits. The alphabet leaves out the marker's bytes, so that no secret can be made of a marker
 * and the text beside it. */
static void test_random(void)
{
    static const char alpha[] = "abdfgXYZ0%/\\\"-.~+";
    unsigned long long x = 0x9E3779B97F4A7C15ull;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    long bad = 0;
    for (int round = 0; round < 20000; round++) {
        secrets_clear();
        char sec[3][16];
        int ns = 1 + (int)(RND() % 3);
        for (int k = 0; k < ns; k++) {
            int l = 4 + (int)(RND() % 10);
            for (int i = 0; i < l; i++)
                sec[k][i] = alpha[RND() % (sizeof alpha - 1) % 6]; /* few letters: many overlaps */
            sec[k][l] = 0;
            secrets_add(sec[k], (size_t)l);
        }
        char in[256], out[256];
        size_t n = 0, want = RND() % 200;
        while (n < want) {
            const char *piece = sec[RND() % (unsigned)ns];
            size_t pl = RND() % 3 ? strlen(piece) - RND() % 3 : 1;
            if (RND() % 4 == 0)
                piece = alpha + RND() % (sizeof alpha - 2), pl = 1;
            if (n + pl >= sizeof in - 1)
                break;
            memcpy(in + n, piece, pl);
            n += pl;
        }
        in[n] = 0;
        size_t cap = 1 + RND() % 255, o = secrets_scrub_to(in, n, out, cap);
        char whole[2048]; /* uncut: a cut output is its start, so a secret is never cut in two */
        secrets_scrub_to(in, n, whole, sizeof whole);
        int leak = strncmp(out, whole, o) != 0;
        for (int k = 0; k < ns; k++)
            leak |= strstr(whole, sec[k]) != NULL;
        if ((leak || o >= cap || strlen(out) != o) && bad++ < 3)
            CHECKF(0, "round %d: \"%s\" cap %zu gave \"%s\"", round, in, cap, out);
    }
#undef RND
    CHECKF(bad == 0, "%ld random texts kept a secret", bad);
    secrets_clear();
}

/* ---- concurrent ---- */

struct scrubber {
    atomic_int *stop;
    long bad, runs;
};

static void *scrub_loop(void *arg)
{
    struct scrubber *s = arg;
    char out[256];
    while (!atomic_load(s->stop)) {
        const char *in = "before tok-0000-constant-value after";
        secrets_scrub_to(in, strlen(in), out, sizeof out);
        s->bad += strcmp(out, "before [secret] after") != 0;
        s->runs++;
    }
    return NULL;
}

/* Threads scrub while another registers rotated tokens (past SECRETS_MAX: the oldest go, the
 * value first registered among them, so it is registered again each round, as a re-read does). */
static void test_concurrent(void)
{
    secrets_clear();
    secrets_add("tok-0000-constant-value", 23);
    atomic_int stop = 0;
    struct scrubber s[2] = {{&stop, 0, 0}, {&stop, 0, 0}};
    pthread_t tid[2];
    for (int i = 0; i < 2; i++)
        CU_ASSERT_FATAL(pthread_create(&tid[i], NULL, scrub_loop, &s[i]) == 0);
    for (int k = 0; k < 600; k++) {
        char v[32];
        snprintf(v, sizeof v, "rotated-%06d", k);
        secrets_add(v, strlen(v));
        if (k % 16 == 0) /* it stays among the newest */
            secrets_add("tok-0000-constant-value", 23);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(tid[i], NULL);
        CHECKF(s[i].bad == 0, "scrubber %d: %ld of %ld wrong", i, s[i].bad, s[i].runs);
    }
    CU_ASSERT(secrets_count() <= SECRETS_MAX);
    secrets_clear();
}

int register_secrets(void)
{
    CU_pSuite s = CU_add_suite("secrets unit", NULL, NULL);
    if (!s || !CU_add_test(s, "every form of a value, short values kept out, registered once", test_forms) ||
        !CU_add_test(s, "credential headers: the value and its credentials; others not kept", test_credential_headers) ||
        !CU_add_test(s, "a cut replaces a secret whole or leaves it out", test_cut) ||
        !CU_add_test(s, "an answer's reason: excerpt across the cut, a redirect's target; ok results as sent",
                     test_answer_reasons) ||
        !CU_add_test(s, "S3's text: the secret key and 64-hex signatures, across the cut", test_s3_text) ||
        !CU_add_test(s, "20,000 random texts of secrets' pieces, random cuts: no secret kept", test_random))
        return -1;
    CU_pSuite c = CU_add_suite("secrets concurrent", NULL, NULL);
    if (!c || !CU_add_test(c, "scrubs while rotated tokens are registered", test_concurrent))
        return -1;
    return 0;
}
