/* Suites "errtally" and "errtally concurrent": the failure tally of the summary, --stats-json,
 * the progress line and the benchmark (src/common/errtally.c). Every kind of error text the run writes
 * in a row (chain.c, load.c, drivers/processes.c, libcurl's messages) is reduced to its stage and a
 * reason without the per-image details; the table is bounded and ordered; one writer and
 * readers at once (make tsan runs the concurrent suite). */
#include "common/errtally.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const struct {
    const char *error, *stage, *reason;
} CASES[] = {
    {"model_03: HTTP 503: <html><body>Service Unavailable</body></html> (after 4 attempts)", "model_03", "HTTP 503"},
    {"model_05[2]: HTTP 500: {\"error\": \"injected fault: error\"} (after 1 attempt)", "model_05", "HTTP 500"},
    {"model_01: HTTP 413: <html> 413 Request Entity Too Large (after 1 attempt)", "model_01", "HTTP 413"},
    {"model_01: HTTP 302 to http://h/v2/model_01 (point the stage's url there): moved", "model_01", "HTTP 302"},
    {"model_01: Failed to connect to 127.0.0.1 port 9 after 0 ms: Connection refused (after 4 attempts)", "model_01",
     "cannot connect: Connection refused"},
    {"model_01: Failed to connect to models.internal port 8080 after 3 ms: Couldn't connect to server (after 4 attempts)",
     "model_01", "cannot connect: Couldn't connect to server"},
    {"model_02: Operation timed out after 30001 milliseconds with 0 bytes received (after 4 attempts)", "model_02",
     "timed out"},
    {"model_02: Operation timed out after 1000 milliseconds with 12 out of 40 bytes received (after 2 attempts)",
     "model_02", "timed out"},
    {"model_02: Connection timed out after 5001 milliseconds (after 4 attempts)", "model_02", "connect timed out"},
    {"model_01: the answer is not JSON at byte 0: <html>oops (after 4 attempts)", "model_01", "the answer is not JSON"},
    {"model_01: the answer is not valid JSON: invalid UTF-8 at byte 17: {\"result\": \"a  (after 4 attempts)",
     "model_01", "the answer is not valid JSON: invalid UTF-8"},
    {"model_01: the answer has no \"result\": {\"a\": 1, \"b\": 2} (after 4 attempts)", "model_01",
     "the answer has no \"result\""},
    {"label: \"result\" failed: Cannot index string with \"x\": {\"a\": 1} (after 4 attempts)", "label",
     "\"result\" failed: Cannot index string with \"x\""},
    {"label: \"result\" yielded nothing: {\"a\": 1} (after 4 attempts)", "label", "\"result\" yielded nothing"},
    {"label: Bad image data. (after 1 attempt)", "label", "Bad image data."},
    {"label: model resnet50 has 3 replicas down (after 1 attempt)", "label", "model resnet50 has N replicas down"},
    {"model_01: SSL certificate problem: self-signed certificate in certificate chain (after 1 attempt)", "model_01",
     "SSL certificate problem: self-signed certificate in certificate chain"},
    {"model_01: Recv failure: Connection reset by peer (after 4 attempts)", "model_01",
     "Recv failure: Connection reset by peer"},
    {"model_04: transfer closed with 120 bytes remaining to read (after 4 attempts)", "model_04",
     "transfer closed with N bytes remaining to read"},
    {"empty file (0 bytes): not sent", "", "empty file (N bytes): not sent"},
    {"file is 70000000 bytes, more than --max-image-bytes 67108864: not sent", "",
     "file is N bytes, more than --max-image-bytes N: not sent"},
    {"cannot open the file: Permission denied", "", "cannot open the file: Permission denied"},
    {"the file shrank while it was read (10 of 200 bytes)", "", "the file shrank while it was read (N of N bytes)"},
    {"worker process 4242 was killed by signal 9 (Killed) while handling this image (tried 2 times)", "",
     "worker process N was killed by signal N (Killed) while handling this image"},
    {"model_05[3]: the element is not base64, so its bytes cannot be sent", "model_05",
     "the element is not base64, so its bytes cannot be sent"},
    {"model.v2-b: HTTP 401: denied (after 1 attempt)", "model.v2-b", "HTTP 401"},
    {"model_01: HTTP/2 stream 3 was not closed cleanly: PROTOCOL_ERROR (err 1) (after 4 attempts)", "model_01",
     "HTTP/2 stream N was not closed cleanly: PROTOCOL_ERROR (err N)"},
    {"", "", "no reason given"},
};

static void test_normalise(void)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char stage[ERRTALLY_STAGE], reason[ERRTALLY_REASON];
        errtally_normalise(CASES[i].error, stage, sizeof stage, reason, sizeof reason);
        CHECKF(!strcmp(stage, CASES[i].stage) && !strcmp(reason, CASES[i].reason),
               "\"%s\": got stage \"%s\" reason \"%s\", want \"%s\" \"%s\"", CASES[i].error, stage, reason,
               CASES[i].stage, CASES[i].reason);
    }
    char stage[ERRTALLY_STAGE], reason[ERRTALLY_REASON];
    errtally_normalise(NULL, stage, sizeof stage, reason, sizeof reason);
    CU_ASSERT_STRING_EQUAL(stage, "");
    CU_ASSERT_STRING_EQUAL(reason, "no reason given");
    /* Control characters and bytes outside ASCII become '?'; a long reason is cut. */
    errtally_normalise("label: bad\tthing \xc3\xa9\n here", stage, sizeof stage, reason, sizeof reason);
    CU_ASSERT_STRING_EQUAL(stage, "label");
    CU_ASSERT_STRING_EQUAL(reason, "bad?thing ??? here");
    char longer[600];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    memcpy(longer, "label: ", 7);
    errtally_normalise(longer, stage, sizeof stage, reason, sizeof reason);
    CU_ASSERT_EQUAL(strlen(reason), ERRTALLY_REASON - 1);
    /* A "stage" too long to be one (or with a blank) is no stage: the text stays whole. */
    char name[200];
    memset(name, 'a', 100);
    snprintf(name + 100, sizeof name - 100, ": HTTP 500: x");
    errtally_normalise(name, stage, sizeof stage, reason, sizeof reason);
    CU_ASSERT_STRING_EQUAL(stage, "");
    CU_ASSERT(strncmp(reason, "aaaa", 4) == 0);
    /* Two images of one kind give one entry: the details that differ are gone. */
    char s1[ERRTALLY_STAGE], r1[ERRTALLY_REASON];
    errtally_normalise("model_01: HTTP 503: busy, retry in 3s (after 4 attempts)", s1, sizeof s1, r1, sizeof r1);
    errtally_normalise("model_01: HTTP 503: overloaded (after 2 attempts)", stage, sizeof stage, reason, sizeof reason);
    CU_ASSERT(!strcmp(s1, stage) && !strcmp(r1, reason));
}

static void test_tally(void)
{
    struct errtally *t = errtally_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct errtally_entry top[ERRTALLY_MAX];
    uint64_t other = 9, total = 9;
    CU_ASSERT_EQUAL(errtally_top(t, top, ERRTALLY_MAX, &other, &total), 0);
    CU_ASSERT(other == 0 && total == 0);
    for (int i = 0; i < 3; i++)
        errtally_add(t, "model_01: Operation timed out after 1000 milliseconds with 0 bytes received (after 4 attempts)");
    for (int i = 0; i < 5; i++) {
        char e[128];
        snprintf(e, sizeof e, "model_03[%d]: HTTP 503: queue full %d (after 4 attempts)", i, i * 7);
        errtally_add(t, e);
    }
    errtally_add(t, "empty file (0 bytes): not sent");
    errtally_add(t, NULL);
    int n = errtally_top(t, top, ERRTALLY_MAX, &other, &total);
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT(other == 0 && total == 10);
    CU_ASSERT_STRING_EQUAL(top[0].stage, "model_03");
    CU_ASSERT_STRING_EQUAL(top[0].reason, "HTTP 503");
    CU_ASSERT_EQUAL(top[0].count, 5);
    CU_ASSERT_STRING_EQUAL(top[0].example, "model_03[0]: HTTP 503: queue full 0 (after 4 attempts)");
    CU_ASSERT_STRING_EQUAL(top[1].reason, "timed out");
    CU_ASSERT_EQUAL(top[1].count, 3);
    /* equal counts: in the order first seen */
    CU_ASSERT_STRING_EQUAL(top[2].reason, "empty file (N bytes): not sent");
    CU_ASSERT_STRING_EQUAL(top[3].reason, "no reason given");
    char label[256];
    errtally_label(&top[0], label, sizeof label);
    CU_ASSERT_STRING_EQUAL(label, "model_03: HTTP 503");
    errtally_label(&top[2], label, sizeof label);
    CU_ASSERT_STRING_EQUAL(label, "empty file (N bytes): not sent");
    /* Fewer asked than there are: the rest is "other". */
    CU_ASSERT_EQUAL(errtally_top(t, top, 1, &other, &total), 1);
    CU_ASSERT(other == 5 && total == 10);
    /* Bounded: kinds beyond ERRTALLY_MAX are counted together. */
    for (int i = 0; i < ERRTALLY_MAX + 8; i++) {
        char e[64];
        snprintf(e, sizeof e, "stage_%d: HTTP 500: x", i);
        errtally_add(t, e);
    }
    n = errtally_top(t, top, ERRTALLY_MAX, &other, &total);
    CU_ASSERT_EQUAL(n, ERRTALLY_MAX);
    CU_ASSERT_EQUAL(total, 10 + ERRTALLY_MAX + 8);
    CU_ASSERT_EQUAL(other, 12); /* 4 kinds were there: 28 of the 40 new ones fit, 12 did not */
    uint64_t sum = other;
    for (int i = 0; i < n; i++)
        sum += top[i].count;
    CU_ASSERT_EQUAL(sum, total);
    /* An entry already in the table still counts once the table is full. */
    errtally_add(t, "model_03: HTTP 503: again (after 1 attempt)");
    CU_ASSERT_EQUAL(errtally_top(t, top, 1, NULL, NULL), 1);
    CU_ASSERT_EQUAL(top[0].count, 6);
    errtally_free(t);
    CU_ASSERT_EQUAL(errtally_top(NULL, top, 1, &other, &total), 0);
    CU_ASSERT(other == 0 && total == 0);
    errtally_add(NULL, "x"); /* no-op */
    errtally_free(NULL);
}

/* One writer (the run's) and readers (progress line, bench sampler) at once. */
struct reader {
    struct errtally *t;
    atomic_int *stop;
    long reads, bad; /* this reader's own (CUnit's asserts are not for threads) */
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    struct errtally_entry top[ERRTALLY_MAX];
    while (!atomic_load(r->stop)) {
        uint64_t other, total;
        int n = errtally_top(r->t, top, ERRTALLY_MAX, &other, &total);
        uint64_t sum = other;
        for (int i = 0; i < n; i++)
            sum += top[i].count;
        r->bad += sum != total;
        r->reads++;
    }
    return NULL;
}

static void test_concurrent(void)
{
    struct errtally *t = errtally_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    atomic_int stop = 0;
    struct reader r[2] = {{t, &stop, 0, 0}, {t, &stop, 0, 0}};
    pthread_t tid[2];
    for (int i = 0; i < 2; i++)
        CU_ASSERT_FATAL(pthread_create(&tid[i], NULL, read_loop, &r[i]) == 0);
    for (int i = 0; i < 20000; i++) {
        char e[64];
        snprintf(e, sizeof e, "model_0%d: HTTP 50%d: x (after 1 attempt)", i % 5, i % 3);
        errtally_add(t, e);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(tid[i], NULL);
        CHECKF(r[i].bad == 0, "reader %d: %ld of %ld reads inconsistent", i, r[i].bad, r[i].reads);
    }
    struct errtally_entry top[ERRTALLY_MAX];
    uint64_t other, total;
    CU_ASSERT_EQUAL(errtally_top(t, top, ERRTALLY_MAX, &other, &total), 15);
    CU_ASSERT(total == 20000 && other == 0);
    errtally_free(t);
}

int register_errtally(void)
{
    CU_pSuite s = CU_add_suite("errtally", NULL, NULL);
    if (!s || !CU_add_test(s, "every kind of row error reduced to stage and reason", test_normalise) ||
        !CU_add_test(s, "counts, order, bound, other", test_tally))
        return -1;
    CU_pSuite c = CU_add_suite("errtally concurrent", NULL, NULL);
    if (!c || !CU_add_test(c, "one writer, two readers", test_concurrent))
        return -1;
    return 0;
}
