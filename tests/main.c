/* The CUnit runner. Each tests/test_<module>.c defines register_<module>(), which adds its
 * suites. SUITES lists exactly those functions, one a line: a name listed without its function
 * fails the link, and a function not listed fails `make check` (tests/check-suites.sh compares
 * this list with the definitions), so no test file can be left out unnoticed.
 * ANNOTATE_TEST_FILTER=word runs only the suites whose name contains word (make tsan, make
 * valgrind use it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    X(limit)      \
    X(endpoint)   \
    X(s3)         \
    X(s3_servers) \
    X(sources)    \
    X(hash)       \
    X(store)      \
    X(prepare)    \
    X(prepare_run) \
    X(memo)       \
    X(cache)

#define DECLARE(name) int register_##name(void);
SUITES(DECLARE)

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
#define REGISTER(name) if (register_##name() != 0) { \
        fprintf(stderr, "registering %s tests failed: %s\n", #name, CU_get_error_msg()); return 2; }
    SUITES(REGISTER)

    const char *filter = getenv("ANNOTATE_TEST_FILTER");
    if (filter && *filter) {
        for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext)
            if (!strstr(s->pName, filter))
                CU_set_suite_active(s, CU_FALSE);
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
