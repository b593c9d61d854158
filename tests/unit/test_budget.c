/* Suites "budget" and "budget_concurrent": the --max-memory budget of flow/budget.h, on a page
 * of its own (shared_create) for each test.
 *
 *   - images wait beyond the cap, one larger than the cap goes alone;
 *   - answers go past the cap by the room; past that one answer (the token's) grows alone, and
 *     the next one gets the token when it is given back;
 *   - a dead worker's share is given back (budget_reap), a sent image's share taken over
 *     (budget_adopt), and a dead worker's token freed;
 *   - threads taking and giving images and answers at once leave nothing held (make tsan). */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "endpoint/shared.h"
#include "flow/budget.h"

static struct shared sh;

static int page_up(uint64_t cap, uint64_t room)
{
    if (shared_create(&sh))
        return -1;
    budget_use(&sh.page->budget, 0);
    budget_set(cap, room);
    return 0;
}

static void page_down(void)
{
    budget_use(NULL, 0);
    shared_close(&sh);
}

static int stop_now(const void *arg)
{
    (void)arg;
    return 1;
}

static void test_images(void)
{
    CU_ASSERT_EQUAL_FATAL(page_up(100, 50), 0);
    CU_ASSERT_EQUAL(budget_take(150, NULL, stop_now, NULL), 0); /* larger than the cap: alone */
    CU_ASSERT_EQUAL(budget_take(1, NULL, stop_now, NULL), -1);  /* nothing more beside it */
    budget_give(150);
    CU_ASSERT_EQUAL(budget_take(60, NULL, stop_now, NULL), 0);
    CU_ASSERT_EQUAL(budget_take(40, NULL, stop_now, NULL), 0);
    CU_ASSERT_EQUAL(budget_take(1, NULL, stop_now, NULL), -1);
    CU_ASSERT_EQUAL(budget_held(), 100);
    budget_give(100);
    CU_ASSERT_EQUAL(budget_held(), 0);
    CU_ASSERT_EQUAL(budget_peak(), 150);
    page_down();
}

static void test_answers(void)
{
    CU_ASSERT_EQUAL_FATAL(page_up(100, 50), 0);
    CU_ASSERT_EQUAL(budget_take(100, NULL, stop_now, NULL), 0); /* images fill the cap */
    uint64_t a = 0, b = 0, c = 0;
    CU_ASSERT_EQUAL(budget_answer_grow(40, &a), 0); /* within the room */
    CU_ASSERT_EQUAL(a, 0);
    CU_ASSERT_EQUAL(budget_answer_grow(30, &b), 0); /* past it: b takes the token */
    CU_ASSERT(b != 0);
    CU_ASSERT_EQUAL(budget_answer_grow(30, &b), 0); /* and keeps growing */
    CU_ASSERT_EQUAL(budget_answer_grow(5, &c), 1);  /* c waits */
    CU_ASSERT_EQUAL(budget_answer_grow(5, &a), 1);  /* so does a */
    CU_ASSERT_EQUAL(budget_held(), 200);
    budget_answer_give(60, &b);
    CU_ASSERT_EQUAL(b, 0);
    CU_ASSERT_EQUAL(budget_answer_grow(5, &c), 0); /* room again (145 of 150) */
    CU_ASSERT_EQUAL(c, 0);
    CU_ASSERT_EQUAL(budget_answer_grow(20, &a), 0); /* past the room: a has the token now */
    CU_ASSERT(a != 0);
    budget_answer_give(60, &a);
    budget_answer_give(5, &c);
    CU_ASSERT_EQUAL(a, 0);
    budget_give(100);
    CU_ASSERT_EQUAL(budget_held(), 0);
    page_down();
}

static void test_workers(void)
{
    CU_ASSERT_EQUAL_FATAL(page_up(1000, 100), 0);
    struct shared_page *p = sh.page;
    atomic_store(&p->holders[6].pid, 4242); /* a worker process, entry 7 */
    budget_use(&p->budget, 7);               /* as that worker */
    CU_ASSERT_EQUAL(budget_take(300, NULL, stop_now, NULL), 0);
    CU_ASSERT_EQUAL(budget_take(200, NULL, stop_now, NULL), 0);
    uint64_t tok = 0;
    budget_set(100, 10);
    CU_ASSERT_EQUAL(budget_answer_grow(50, &tok), 0); /* the token, with pid 4242's mark */
    CU_ASSERT(tok != 0);
    budget_use(&p->budget, 0);                        /* the parent */
    CU_ASSERT_EQUAL(atomic_load(&p->budget.by_holder[6]), 550);
    budget_adopt(p, 4242, 200); /* an image it sent back: the parent's now */
    CU_ASSERT_EQUAL(atomic_load(&p->budget.by_holder[6]), 350);
    CU_ASSERT_EQUAL(budget_held(), 550);
    /* (the token is marked with this process's pid, not 4242's: reap frees only its own) */
    atomic_store(&p->budget.alone, (uint64_t)4242 << 32 | 1);
    budget_reap(p, 4242);
    CU_ASSERT_EQUAL(atomic_load(&p->budget.alone), 0);
    CU_ASSERT_EQUAL(atomic_load(&p->budget.by_holder[6]), 0);
    CU_ASSERT_EQUAL(budget_held(), 200); /* the adopted image, until the parent gives it */
    budget_give(200);
    CU_ASSERT_EQUAL(budget_held(), 0);
    page_down();
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 20000

static void *churn(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        if ((i + id) % 2) {
            if (budget_take(7, NULL, NULL, NULL) == 0)
                budget_give(7);
        } else {
            uint64_t tok = 0, got = 0;
            for (int k = 0; k < 3; k++) {
                while (budget_answer_grow(11, &tok))
                    budget_answer_wait(0.001);
                got += 11;
            }
            budget_answer_give(got, &tok);
        }
    }
    return NULL;
}

static void test_concurrent(void)
{
    CU_ASSERT_EQUAL_FATAL(page_up(40, 20), 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, churn, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(budget_held(), 0);
    CU_ASSERT_EQUAL(atomic_load(&sh.page->budget.alone), 0);
    /* images never past the cap but alone; answers never past cap + room but the token's */
    CHECKF(budget_peak() <= 40 + 20 + 33, "peak %llu", (unsigned long long)budget_peak());
    page_down();
}

int register_budget(void)
{
    CU_pSuite s = CU_add_suite("budget", NULL, NULL);
    if (!s || !CU_add_test(s, "images wait beyond the cap; one larger than it goes alone", test_images) ||
        !CU_add_test(s, "answers: the room past the cap, then one at a time with the token", test_answers) ||
        !CU_add_test(s, "worker processes: a dead one's share and token come back, a sent image's is adopted",
                     test_workers))
        return -1;
    CU_pSuite c = CU_add_suite("budget_concurrent", NULL, NULL);
    if (!c || !CU_add_test(c, "four threads taking and giving images and answers: nothing left held", test_concurrent))
        return -1;
    return 0;
}
