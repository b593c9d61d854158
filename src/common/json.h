/* json: strict JSON (RFC 8259) read straight off the text, with no tree. A model's answer is
 * checked here and its result is taken as the exact bytes the server sent, so no value passes
 * through a double or a decoded string on its way to the CSV: 1e999, 1e-400, an int64 ID, a
 * "\u0000" inside a string all come out as they went in.
 *
 * Strict means: one value, white space around it and nothing else; strings of valid UTF-8 with
 * no raw control characters and only the escapes JSON has; numbers as the grammar has them (no
 * leading zeros, no NaN, no hex); objects and arrays nested at most JSON_MAX_DEPTH deep.
 *
 * A path is the plain part of jq: `.result`, `.choices[0].message.content`, `.["sub-img"]`,
 * `.[2]`, `.` (the whole answer). json_find walks it on the text and yields the span of the
 * value it names. */
#ifndef ANNOTATE_JSON_H
#define ANNOTATE_JSON_H

#include <stddef.h>

#define JSON_MAX_DEPTH 512

/* Checks that s[0..n) is exactly one JSON value (white space around it allowed). Returns 0, or
 * -1 with a reason in err ("not JSON ... at byte N", "invalid UTF-8 at byte N", "nested too deep",
 * "text after the JSON value at byte N"). */
int json_check(const char *s, size_t n, char *err, size_t errlen);

/* One step of a path: an object key (key != NULL, keylen bytes, already unescaped) or an array
 * index. */
struct json_step {
    const char *key;
    size_t keylen;
    long index;
};

#define JSON_MAX_STEPS 32

struct json_path {
    struct json_step step[JSON_MAX_STEPS];
    int n;
    char *storage; /* owned: the unescaped keys */
};

/* Parses a plain path (see above). Returns 0, or -1 with err when expr is not one (it may still
 * be a jq program). json_path_free releases it. */
int json_path_parse(const char *expr, struct json_path *p, char *err, size_t errlen);
void json_path_free(struct json_path *p);

/* Finds the value the path names in a text json_check accepted. Returns 0 and the value's span
 * (*v, *vlen: its exact bytes, no surrounding white space), or -1 when the path names nothing
 * (a key that is missing, an index past the end, a step into a value of another kind). With
 * duplicate keys the last one counts, as in jq. */
int json_find(const char *s, size_t n, const struct json_path *p, const char **v, size_t *vlen);

/* Calls each(arg, span) for every element of the array s[0..n) (a text json_check accepted), in
 * order, with the element's exact bytes. Returns the number of elements, or -1 when s is not an
 * array or each returned non-zero. */
int json_elements(const char *s, size_t n, int (*each)(void *arg, const char *v, size_t vlen), void *arg);

#endif
