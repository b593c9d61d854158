/* util: the small helpers every test file shares, one copy of each: files, time, wait statuses,
 * timeouts that grow under valgrind, failure printers, the tests' PRNG, a PNG writer.
 *
 * util.c uses libc and src/common/fdio.c only (no CUnit, no curl), so that bench/gen_images.c can be
 * linked with it for the PNG writer. Keep it that way: a helper that needs more belongs in
 * helpers/proc.c, tree.c or e2e.c. (src/common/fdio.h's fd_write_all writes a whole buffer.) */
#ifndef ANNOTATE_TESTS_UTIL_H
#define ANNOTATE_TESTS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- files ---- */

/* Reads a whole file (which may be empty). Returns a malloc'd buffer holding its bytes and a NUL
 * after them (so text files can be used as strings), freed by the caller, or NULL when it
 * cannot be read or memory runs out. *len gets the length (len may be NULL). */
char *slurp(const char *path, size_t *len);

/* Creates (or truncates) path and writes the len bytes of data into it. 0 or -1. */
int write_file(const char *path, const void *data, size_t len);
/* write_file of a NUL-terminated text. 0 or -1. */
int write_text(const char *path, const char *text);

/* The last maxlen - 1 bytes of a file into out, NUL-terminated, for failure messages ("" when
 * missing). */
void file_tail(const char *path, char *out, size_t maxlen);

/* A fresh directory $TMPDIR/annotate-TAG-XXXXXX (TMPDIR unset: /tmp), mode 0700, into buf.
 * 0 or -1. */
int make_tmpdir(char *buf, size_t cap, const char *tag);

/* The project's fixtures/ directory: from the working directory, or next to this source file
 * (a run from another directory). */
const char *fixtures_dir(void);

/* The project's examples/ directory (the dialect pipelines), found as fixtures_dir() is. */
const char *examples_dir(void);

/* 1 when prog is an executable file in one of $PATH's directories. */
int in_path(const char *prog);

/* ---- time and processes ---- */

long now_ms(void); /* CLOCK_MONOTONIC (src/flow/item.h has now_s in seconds) */
void sleep_ms(long ms); /* the whole time, even when signals interrupt it */

/* A waitpid status as one number: the exit status, 128 + the signal, or -1. */
int decode_status(int st);

/* Waits up to timeout_ms for pid (a child). Returns decode_status of its end, -2 when it is still
 * running at the deadline (it is left running), or -1 when it cannot be waited for. */
int wait_for(pid_t pid, long timeout_ms);

/* A timeout of s seconds for a run of annotate or the mock, scaled for the slow ways the suite
 * runs: 20 times under a wrapper ($ANNOTATE_WRAP, i.e. valgrind), 3 times otherwise (the
 * sanitizers, a loaded machine). A timeout only bounds a hang; no test measures one. */
int tmo(int s);

/* How many times slower this build of annotate and the mock runs than a plain one: 5 under
 * ThreadSanitizer, 3 under AddressSanitizer, else 1 (known when the tests are compiled, with the
 * same flags). For a client's --timeout-ms that a test wants to fire only on a server that
 * hangs, never on one slow to read a request. */
int san_factor(void);

/* ---- failure messages ---- */

/* Prints what a command gave when a test did not expect it: "what: exit RC; output:" and out. */
void show(const char *what, int rc, const char *out);

/* The same with the last 3000 bytes of a log file as the output. */
void show_log(const char *what, int rc, const char *log_path);

/* n bytes made printable: a byte outside 0x20..0x7e, and '\', as \xHH; at most ~300 characters
 * of output. The result lives in one of 4 static buffers used in turn, so up to four can be
 * passed to one printf. */
const char *printable(const char *s, size_t n);

/* qsort/bsearch comparator for an array of char *: strcmp order. */
int cmp_strp(const void *a, const void *b);

/* Frees the n strings of v, then v; v may be NULL. */
void free_strs(char **v, size_t n);

/* ---- pseudo-random numbers ---- */

/* xorshift64 (13, 7, 17): deterministic, so a failure reproduces from its seed. The state must
 * not be 0. Each test file keeps its own state, seeded with a constant. */
uint64_t xorshift64(uint64_t *state);

/* n bytes, each the top byte of one xorshift64 draw. */
void fill_random(uint64_t *state, unsigned char *p, size_t n);

/* ---- PNG ---- */

/* The size of the PNG png_gray8 writes for h rows of w pixels, with a padding chunk of pad data
 * bytes when with_pad (pad may be 0: the chunk is then 12 bytes). */
size_t png_gray8_size(uint32_t w, uint32_t h, int with_pad, size_t pad);

/* Writes a valid 8-bit greyscale PNG of w x h pixels into out (png_gray8_size bytes): IHDR; one
 * IDAT whose zlib stream holds the scanlines in stored (uncompressed) deflate blocks, so any
 * decoder reads it and writing it costs nothing; when pad_data is not NULL, a private ancillary
 * chunk "raNd" (safe to copy, ignored by decoders) holding its pad bytes; IEND. scanlines holds h
 * rows of 1 + w bytes: the row's filter byte (0, none), then its pixels. Returns the bytes
 * written. */
size_t png_gray8(unsigned char *out, uint32_t w, uint32_t h, const unsigned char *scanlines,
                 const unsigned char *pad_data, size_t pad);

#endif
