/* secrets: the secret values a run holds, and the one scrub that keeps them out of the text it
 * writes.
 *
 * What is a secret. A value is registered (secrets_add) where it is expanded, and nowhere else:
 *   - a header's ${VAR} and ${file:PATH} (src/pipeline/headers.c), at start and each time a 401
 *     makes the files be read again, so a rotated token's new value is one too;
 *   - the value of a header whose name says it carries a credential (Authorization, Cookie, a
 *     name holding "key", "token", "secret", "auth", "pass", "session", "signature" or
 *     "credential"), also when written literally, and its credentials alone ("Bearer X": X);
 *   - a ${VAR} in a stage's URL (src/pipeline/pipeline.c), as Google Vision's ?key=;
 *   - every header sent to image hosts with --image-auth (src/sources/sources.c);
 *   - S3's secret access key and session token (src/sources/s3conf.c). S3's signature changes
 *     with every request and is computed inside libcurl: S3's messages are scrubbed of every run
 *     of 64 hex digits, the form of a SigV4 signature, instead (src/sources/s3req.c).
 * A ${VAR} in a body is not a secret: it is data sent to the model (a model's name, a prompt);
 * a key belongs in a header or the URL.
 *
 * Each value is kept in the forms a server may echo it in: as sent, JSON-escaped ('"', '\' and
 * '/' as "\/"), and percent-encoded. Values shorter than SECRETS_MIN bytes are not kept: they
 * would scrub ordinary words and numbers out of every message ("abc", "1"), and a credential is
 * never that short. At most SECRETS_MAX forms are kept, so memory stays bounded in bytes (each
 * form at most three times its value, and a value at most 64 KiB, the largest a ${file:} may
 * be: tokens are tens of bytes); past that the value registered longest ago is forgotten, which
 * after many rotations is an expired token (a value registered again, as each re-read after a
 * 401 does, counts as new).
 *
 * The scrub (secrets_scrub_to) replaces every occurrence of every form with SECRETS_MARK, and a
 * form's first SECRETS_CUT_MIN or more bytes followed by "..." (jq quotes a value it cannot use
 * cut that way: "Cannot iterate over string (\"tok3n-abc...)"), dots included. It is
 * called where text made from an answer or a URL is made, not where it is printed, so the
 * choke points are few: where a failure reason is made (chain_read_answer, item_fail), where an
 * excerpt of a body is cut (chain_excerpt: the scrub runs before the cut, so that a secret
 * that straddles the cut leaves no prefix behind), where S3's message is read, where a worker's
 * row reaches its parent, and where the failure tally and bench's report take their strings.
 * Rows, the summary, --stats-json, the progress line, the stop message, bench's report and log
 * lines all take their text from those.
 *
 * A result that an ok answer produced is not scrubbed: it is written byte for byte as the
 * server sent it, because it is the data the run is for, and a scrub matches by value: it
 * cannot tell a token from a label that happens to equal a ${VAR}, so it would change results
 * silently. A server that returns a credential as its result is returning it as data.
 *
 * Thread-safe (a read-write lock): threads and event loops scrub while a 401 registers a new
 * token. A worker process starts with its parent's values (sent in its configuration frame:
 * secrets_each, then secrets_add) and adds those it expands itself. */
#ifndef ANNOTATE_SECRETS_H
#define ANNOTATE_SECRETS_H

#include <stddef.h>

#define SECRETS_MIN 4
#define SECRETS_CUT_MIN 6
#define SECRETS_MAX 192
#define SECRETS_MARK "[secret]"

/* Registers len bytes at v (and their echoed forms) as a secret. Shorter than SECRETS_MIN: not
 * kept. A value registered already is not added again (it becomes the newest). Out of memory:
 * the value is not kept. */
void secrets_add(const char *v, size_t len);

/* secrets_add of a "Name: value" header line's value when the name says it carries a
 * credential (see above), and of its credentials after the scheme's word. */
void secrets_add_credential_header(const char *line);

/* Writes src[0..len) into out (at most cap - 1 bytes and a NUL; cap > 0) with every secret
 * replaced by SECRETS_MARK, stopping when out is full: a secret that the cut would split is
 * replaced whole or not written at all. src and out must not overlap. Returns the bytes
 * written. */
size_t secrets_scrub_to(const char *src, size_t len, char *out, size_t cap);

/* Scrubs the NUL-terminated text in buf (of cap bytes) in place; it is cut at cap - 1 bytes
 * when the markers make it longer. */
void secrets_scrub(char *buf, size_t cap);

/* Calls fn with each registered value, as registered (not its echoed forms), under the lock:
 * fn must not call this module. Stops at fn's first non-zero return, which it returns. */
int secrets_each(int (*fn)(void *arg, const char *v, size_t len), void *arg);

/* The number of forms kept (for tests). */
int secrets_count(void);

/* Wipes and forgets every value (at exit, for tests). */
void secrets_clear(void);

#endif
