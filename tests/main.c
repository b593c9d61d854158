/* The CUnit runner. Each tests/test_<module>.c defines register_<module>(), which adds its
 * suites. SUITES lists exactly those functions, one a line: a name listed without its function
 * fails the link, and a function not listed fails `make check` (tests/check-suites.sh compares
 * this list with the definitions), so no test file can be left out unnoticed.
 * ANNOTATE_TEST_FILTER=word runs only the suites whose name contains word (make tsan, make
 * valgrind use it). ANNOTATE_TEST_SKIP=word,word leaves out the suites whose name contains one
 * of the words (make sanitize runs the suites that test other programs plain only).
 * Each suite's wall time is printed after it, and the slowest at the end: make test has a budget. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <CUnit/Basic.h>

#define SUITES(X) \
    X(b64)        \
    X(scan)       \
    X(queue)      \
    X(pipeline)   \
    X(chain)      \
    X(json)       \
    X(template)   \
    X(backoff)    \
    X(select)     \
    X(csv)        \
    X(resume)     \
    X(jsonl)      \
    X(mock)       \
    X(mock_capacity) \
    X(mock_dialects) \
    X(e2e)        \
    X(dialects)   \
    X(dialects_independent) \
    X(faults)     \
    X(outage)     \
    X(limits)     \
    X(budget)     \
    X(replicas)   \
    X(batch)      \
    X(batch_serial) \
    X(batch_concurrent) \
    X(stats)      \
    X(errtally)   \
    X(cli)        \
    X(options)    \
    X(bench)      \
    X(workers)    \
    X(run)        \
    X(pyserver)   \
    X(hardening)  \
    X(hardening2) \
    X(secrets)    \
    X(secrets_e2e) \
    X(limit)      \
    X(endpoint)   \
    X(s3)         \
    X(s3_servers) \
    X(sources)    \
    X(hash)       \
    X(store)      \
    X(prepare)    \
    X(prepare_run) \
    X(prepare_bottleneck) \
    X(memo)       \
    X(cache)      \
    X(cells)      \
    X(badinput)

#define DECLARE(name) int register_##name(void);
SUITES(DECLARE)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The suites' wall times, in run order, for the table at the end. */
#define MAX_TIMED 256
struct timed { const char *name; double s; };
static struct timed timed[MAX_TIMED];
static unsigned n_timed;
static double suite_began;

static void suite_start(const CU_pSuite s)
{
    (void)s;
    suite_began = now_s();
}

static void suite_done(const CU_pSuite s, const CU_pFailureRecord f)
{
    (void)f;
    if (!s->fActive)
        return;
    double took = now_s() - suite_began;
    printf("\n  (suite %s: %.1f s)", s->pName, took);
    if (n_timed < MAX_TIMED)
        timed[n_timed++] = (struct timed){ s->pName, took };
}

static int by_time(const void *a, const void *b)
{
    double x = ((const struct timed *)a)->s, y = ((const struct timed *)b)->s;
    return (x < y) - (x > y);
}

static void print_slowest(void)
{
    qsort(timed, n_timed, sizeof timed[0], by_time);
    double all = 0;
    for (unsigned i = 0; i < n_timed; i++)
        all += timed[i].s;
    printf("\nsuites: %.0f s in all; the slowest:", all);
    for (unsigned i = 0; i < n_timed && i < 10; i++)
        printf("%s %s %.0f s", i ? "," : "", timed[i].name, timed[i].s);
    printf("\n");
}

/* The failures again, after everything else: a log's tail (all that CI may show) names them. */
static void print_failures(void)
{
    unsigned n = 0;
    for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext) {
        if (f->type == CUF_SuiteInactive || f->type == CUF_TestInactive)
            continue; /* left out on purpose (ANNOTATE_TEST_FILTER, ANNOTATE_TEST_SKIP) */
        if (n++ < 20)
            printf("%sFAILED: %s / %s: %s:%u: %s\n", n == 1 ? "\n" : "", f->pSuite ? f->pSuite->pName : "?",
                   f->pTest ? f->pTest->pName : "?", f->strFileName ? f->strFileName : "?", f->uiLineNumber,
                   f->strCondition ? f->strCondition : "");
    }
    if (n > 20)
        printf("... and %u failures more\n", n - 20);
}

/* Whether a suite named name is left out by ANNOTATE_TEST_FILTER or ANNOTATE_TEST_SKIP. */
static int left_out(const char *name, const char *filter, const char *skip)
{
    if (filter && *filter && !strstr(name, filter))
        return 1;
    for (const char *w = skip; w && *w;) {
        size_t n = strcspn(w, ",");
        char word[64];
        if (n > 0 && n < sizeof word) {
            memcpy(word, w, n);
            word[n] = 0;
            if (strstr(name, word))
                return 1;
        }
        w += n + (w[n] == ',');
    }
    return 0;
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
#define REGISTER(name) if (register_##name() != 0) { \
        fprintf(stderr, "registering %s tests failed: %s\n", #name, CU_get_error_msg()); return 2; }
    SUITES(REGISTER)

    const char *filter = getenv("ANNOTATE_TEST_FILTER"), *skip = getenv("ANNOTATE_TEST_SKIP");
    for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext)
        if (left_out(s->pName, filter, skip))
            CU_set_suite_active(s, CU_FALSE);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_set_suite_start_handler(suite_start);
    CU_set_suite_complete_handler(suite_done);
    CU_basic_run_tests();
    print_slowest();
    print_failures();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
