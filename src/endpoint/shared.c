/* shared: see shared.h. */
#include "endpoint/shared.h"

#include <sys/mman.h>
#include <unistd.h>

/* A page only this process and its threads see: what a run falls back to when no memfd can be
 * had (a file size limit below a page stops ftruncate). Worker processes then count on their
 * own, and the parent's progress line misses their requests in flight. */
static int private_page(struct shared *s)
{
    void *m = mmap(NULL, sizeof *s->page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    s->fd = -1;
    s->page = m == MAP_FAILED ? NULL : m;
    return s->page ? 0 : -1;
}

int shared_attach(struct shared *s, int fd)
{
    if (fd < 0)
        return private_page(s);
    void *m = mmap(NULL, sizeof *s->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        s->page = NULL;
        s->fd = -1;
        return -1;
    }
    s->page = m;
    s->fd = fd;
    return 0;
}

int shared_create(struct shared *s)
{
    /* No MFD_CLOEXEC: worker processes inherit it across exec on purpose. */
    int fd = memfd_create("annotate-shared", 0);
    if (fd < 0)
        return private_page(s);
    if (ftruncate(fd, (off_t)sizeof *s->page)) {
        close(fd);
        return private_page(s);
    }
    return shared_attach(s, fd); /* a new memfd reads as zeros: every counter starts at 0 */
}

void shared_close(struct shared *s)
{
    if (!s || !s->page)
        return;
    munmap(s->page, sizeof *s->page);
    if (s->fd >= 0)
        close(s->fd);
    s->page = NULL;
    s->fd = -1;
}
