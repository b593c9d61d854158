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

/* Calls each(arg, key, keylen, v, vlen) for every member of the object s[0..n) (a text json_check
 * accepted), in order: key is the member's name as written between its quotes (escapes left as
 * they are), v the value's exact bytes. Returns the number of members, or -1 when s is not an
 * object or each returned non-zero. */
int json_members(const char *s, size_t n,
                 int (*each)(void *arg, const char *key, size_t keylen, const char *v, size_t vlen), void *arg);

/* Any bytes s[0..n) as a JSON string, its quotes included, into out (room for 6 * n + 2 bytes);
 * returns the length. UTF-8 characters are kept as they are; '"', '\\' and control characters
 * are escaped; a byte that is part of no valid UTF-8 character is written \udcXX (XX the byte:
 * a lone surrogate U+DC80..U+DCFF, Python's "surrogateescape", which os.fsencode turns back into
 * the byte), so that a file name that is not UTF-8 comes back byte for byte from
 * json_string_bytes. */
size_t json_put_bytes(const char *s, size_t n, char *out);

/* The bytes of the JSON string v[0..vlen) (its quotes included): escapes resolved, a lone
 * \udc80..\udcff as the byte it stands for (see json_put_bytes), another lone surrogate as
 * U+FFFD. out has room for vlen bytes. Returns the length, or -1 when v is not exactly one
 * well-formed string. */
long json_string_bytes(const char *v, size_t vlen, char *out);

#endif
