/* fdlimit: a run within RLIMIT_NOFILE. Running out of file descriptors is not an image's failure:
 * every socket, image file, pipe and directory stream of a run counts against one limit, and a
 * run that opened more than it may would fail images at random ("Too many open files"). So before
 * the first image the run works out what it will hold open at most, from the strategies and
 * --workers, --concurrency, --loops, and: raises the soft limit up to the hard one as far as that
 * needs; if that is not enough, lowers those settings (and the scanner's open directories) until
 * the run fits, and says so; if not even one of each fits, it is a set-up error (exit 2). */
#ifndef ANNOTATE_FDLIMIT_H
#define ANNOTATE_FDLIMIT_H

#include <stddef.h>
#include "config.h"

/* Descriptors one run holds at most with cfg's settings, given `open_now` already open. */
long fdlimit_need(const struct config *cfg, long open_now);

/* Descriptors open in this process now. */
long fdlimit_open_now(void);

/* Fits cfg (a copy the run owns) to the limit, as above. Returns 0, with a message in note when
 * settings were lowered ("" otherwise), or -1 with err. */
int fdlimit_fit(struct config *cfg, char *note, size_t notelen, char *err, size_t errlen);

#endif
