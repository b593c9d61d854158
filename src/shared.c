/* shared: see shared.h. */
#include "shared.h"

#include <sys/mman.h>
#include <unistd.h>

int shared_attach(struct shared *s, int fd)
{
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
        return -1;
    if (ftruncate(fd, (off_t)sizeof *s->page)) {
        close(fd);
        return -1;
    }
    return shared_attach(s, fd); /* a new memfd reads as zeros: every counter starts at 0 */
}

void shared_close(struct shared *s)
{
    if (!s || !s->page)
        return;
    munmap(s->page, sizeof *s->page);
    close(s->fd);
    s->page = NULL;
    s->fd = -1;
}
