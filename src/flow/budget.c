/* budget: see budget.h. Lock-free counters in the page; a waiter sleeps on the page's futex word,
 * which every give bumps. A worker notes what it holds before it counts it in `held`, and gives
 * it back from `held` first: if it dies in between, its parent gives back too much (a load may
 * start early), never too little (which could leave the budget held for good). */
#include "flow/budget.h"
#include "endpoint/shared.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct budget_page private_page;
static struct budget_page *B = &private_page;
static _Atomic uint64_t *mine; /* this worker process's entry of by_holder; NULL: none */
static _Atomic uint32_t serial; /* makes each answer's token */

void budget_use(struct budget_page *page, int holder)
{
    B = page ? page : &private_page;
    mine = page && holder > 0 && holder <= BUDGET_MAX_HOLDERS ? &page->by_holder[holder - 1] : NULL;
}

void budget_set(uint64_t max_bytes, uint64_t answer_room)
{
    atomic_store(&B->cap, max_bytes);
    atomic_store(&B->room, answer_room);
}

/* Subtracts n from *v, stopping at 0. */
static void sub_clamped(_Atomic uint64_t *v, uint64_t n)
{
    uint64_t cur = atomic_load(v);
    while (!atomic_compare_exchange_weak(v, &cur, n > cur ? 0 : cur - n))
        ;
}

static void raise_to(_Atomic uint64_t *peak, uint64_t v)
{
    uint64_t p = atomic_load(peak);
    while (v > p && !atomic_compare_exchange_weak(peak, &p, v))
        ;
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    /* Not FUTEX_PRIVATE: the word is in memory shared with worker processes. */
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

static void wake(void)
{
    atomic_fetch_add(&B->gen, 1);
    if (atomic_load(&B->waiters) > 0)
        futex(&B->gen, FUTEX_WAKE, INT_MAX, NULL);
}

/* Counts n in held when held + n stays within limit (0: no limit), or when force. 1 when
 * counted. */
static int count(uint64_t n, uint64_t limit, int alone_ok, int force)
{
    if (mine)
        atomic_fetch_add(mine, n);
    uint64_t cur = atomic_load(&B->held);
    for (;;) {
        if (!force && limit && cur + n > limit && !(alone_ok && cur == 0)) {
            if (mine)
                sub_clamped(mine, n);
            return 0;
        }
        if (atomic_compare_exchange_weak(&B->held, &cur, cur + n))
            break;
    }
    raise_to(&B->peak, cur + n);
    return 1;
}

static void uncount(uint64_t n)
{
    sub_clamped(&B->held, n);
    if (mine)
        sub_clamped(mine, n);
    wake();
}

/* Sleeps until gen moves on from seen, at most max_s seconds. */
static void sleep_on(uint32_t seen, double max_s)
{
    atomic_fetch_add(&B->waiters, 1);
    struct timespec ts = {(time_t)max_s, (long)((max_s - (double)(time_t)max_s) * 1e9)};
    futex(&B->gen, FUTEX_WAIT, seen, &ts);
    atomic_fetch_sub(&B->waiters, 1);
}

int budget_take(uint64_t n, void (*alive)(const void *), int (*stop)(const void *), const void *arg)
{
    for (;;) {
        uint32_t seen = atomic_load(&B->gen);
        if (count(n, atomic_load(&B->cap), 1, 0))
            return 0;
        if (stop && stop(arg))
            return -1;
        sleep_on(seen, 1.0); /* a give after our load of gen changes it: no wake-up is lost */
        if (alive)
            alive(arg);
    }
}

void budget_force(uint64_t n)
{
    count(n, 0, 0, 1);
}

void budget_give(uint64_t n)
{
    if (n)
        uncount(n);
}

int budget_answer_grow(uint64_t n, uint64_t *token)
{
    uint64_t cap = atomic_load(&B->cap);
    uint64_t limit = cap ? cap + atomic_load(&B->room) : 0;
    if (!count(n, limit, 0, *token != 0)) {
        uint64_t id = (uint64_t)(uint32_t)getpid() << 32 | (atomic_fetch_add(&serial, 1) + 1u);
        uint64_t none = 0;
        if (!atomic_compare_exchange_strong(&B->alone, &none, id))
            return 1;
        *token = id;
        count(n, 0, 0, 1);
    }
    return 0;
}

void budget_answer_give(uint64_t n, uint64_t *token)
{
    /* The bytes go back before the token: the other way round, another answer could take the token
     * and grow past the room while these bytes were still counted (seen: a peak of cap + room + two
     * answers' growth, make sanitize's budget_concurrent). */
    sub_clamped(&B->held, n);
    if (mine)
        sub_clamped(mine, n);
    if (*token) {
        uint64_t t = *token;
        atomic_compare_exchange_strong(&B->alone, &t, 0);
        *token = 0;
    }
    wake(); /* (also when n is 0 and only the token went) */
}

void budget_answer_wait(double max_s)
{
    sleep_on(atomic_load(&B->gen), max_s);
}

uint64_t budget_held(void)
{
    return atomic_load(&B->held);
}

uint64_t budget_peak(void)
{
    return atomic_load(&B->peak);
}

/* The holder entry of worker pid in the page, or -1. */
static int holder_of(struct shared_page *sh, int pid)
{
    for (int h = 0; h < LIMIT_MAX_HOLDERS && h < BUDGET_MAX_HOLDERS; h++)
        if (atomic_load(&sh->holders[h].pid) == pid)
            return h;
    return -1;
}

void budget_reap(struct shared_page *sh, int pid)
{
    struct budget_page *b = &sh->budget;
    uint64_t t = atomic_load(&b->alone);
    if (t && (int)(t >> 32) == pid)
        atomic_compare_exchange_strong(&b->alone, &t, 0);
    int h = holder_of(sh, pid);
    uint64_t n = h >= 0 ? atomic_exchange(&b->by_holder[h], 0) : 0;
    sub_clamped(&b->held, n);
    atomic_fetch_add(&b->gen, 1);
    if (atomic_load(&b->waiters) > 0)
        futex(&b->gen, FUTEX_WAKE, INT_MAX, NULL);
}

void budget_adopt(struct shared_page *sh, int pid, uint64_t n)
{
    int h = holder_of(sh, pid);
    if (h >= 0)
        sub_clamped(&sh->budget.by_holder[h], n);
}
