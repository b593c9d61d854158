/* fdio: whole reads and writes on a descriptor, retrying short transfers and EINTR. Used for CSV
 * rows (one row is one write) and for the frames between the parent and its worker processes. */
#ifndef ANNOTATE_FDIO_H
#define ANNOTATE_FDIO_H

#include <stddef.h>

/* Writes all n bytes. Returns 0, or -1 with errno set (EPIPE, ENOSPC, ...). */
int fd_write_all(int fd, const void *p, size_t n);

/* Reads exactly n bytes. Returns 0, or -1 on an error or on end of file before n bytes. */
int fd_read_all(int fd, void *p, size_t n);

#endif
