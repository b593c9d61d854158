/* timers: see timers.h. A binary heap in an array. */
#include "common/timers.h"

#include <stdlib.h>

int timers_push(struct timers *t, double at, void *p)
{
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 64;
        struct timer *h = realloc(t->h, (size_t)cap * sizeof *h);
        if (!h)
            return -1;
        t->h = h;
        t->cap = cap;
    }
    int i = t->n++;
    while (i > 0 && t->h[(i - 1) / 2].at > at) {
        t->h[i] = t->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->h[i] = (struct timer){at, p};
    return 0;
}

void *timers_pop(struct timers *t, double *at)
{
    struct timer top = t->h[0], last = t->h[--t->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && t->h[c + 1].at < t->h[c].at)
            c++;
        if (last.at <= t->h[c].at)
            break;
        t->h[i] = t->h[c];
        i = c;
    }
    if (t->n)
        t->h[i] = last;
    if (at)
        *at = top.at;
    return top.p;
}

void timers_free(struct timers *t)
{
    free(t->h);
    t->h = NULL;
    t->n = t->cap = 0;
}
