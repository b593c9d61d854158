/* util_pyserver: the independent dialect server (tests/servers/dialects.py, FastAPI + uvicorn)
 * as a child process of a test, and the prediction of the CSV cell annotate writes for each
 * example pipeline (examples/NAME.json) run against it.
 *
 * The server's model (see the docstring of dialects.py), for an image of bytes B:
 *   crc = CRC-32 of B (zlib's: reflected polynomial 0xEDB88320, init and final xor 0xffffffff)
 *   LABEL = "L%08x" of crc, LABEL2 = "L%08x" of crc ^ 0xffffffff, SCORE = the length of B
 * Bytes that are not an image (pyserver_is_image) are refused by every dialect.
 *
 * Environment:
 *   PYSERVER_PYTHON  the interpreter (default /usr/bin/python3 when it exists, else python3 from
 *                    PATH): Debian's python3-fastapi, python3-uvicorn and python3-multipart are
 *                    installed for /usr/bin/python3, which a python3 earlier in PATH (pyenv, a
 *                    virtualenv) may not see. */
#ifndef ANNOTATE_TESTS_UTIL_PYSERVER_H
#define ANNOTATE_TESTS_UTIL_PYSERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pyserver {
    pid_t pid;          /* 0 when not running */
    int port;
    char base_url[64];  /* "http://127.0.0.1:PORT", no trailing slash */
};

/* The names of the example pipelines the server answers (examples/NAME.json), NULL-terminated:
 * kserve-v2, torchserve, tfserving, openai-vision, hf-endpoint, multipart, google-vision. */
extern const char *const pyserver_examples[];

/* $PYSERVER_PYTHON, or /usr/bin/python3 when executable, or "python3". */
const char *pyserver_python(void);

/* tests/servers/dialects.py from the working directory (the repository root, where make check
 * runs the tests), or next to this source file. */
const char *pyserver_script(void);

/* Starts PYTHON dialects.py --port P [--token T] on a free port P of 127.0.0.1 and waits (about
 * 15 s, scaled by tmo()) until GET /health answers 200. token NULL: no --token. The server's
 * stderr is the test's. Tries up to three ports if one is taken before the server binds it.
 * Returns 0 and fills *out, or -1 (a message on stderr; nothing left running). */
int pyserver_start(const char *token, struct pyserver *out);

/* SIGTERM to its PID, SIGKILL after 5 s, and reaps it; sets pid to 0. No-op when not running. */
void pyserver_stop(struct pyserver *s);

/* CRC-32 (ISO-HDLC, as zlib.crc32): "123456789" gives 0xcbf43926. */
uint32_t pyserver_crc32(const unsigned char *p, size_t n);

/* 1 when the bytes start with a PNG, JPEG, GIF, WebP (RIFF....WEBP), BMP or TIFF signature and
 * are not empty: the images the server classifies (is_image in dialects.py). */
int pyserver_is_image(const unsigned char *p, size_t n);

/* The exact cell annotate writes for an image of these bytes when it runs examples/EXAMPLE.json
 * against this server: the JSON value the example's "result" expression selects, as compact
 * JSON (the server's own bytes, which are also what jq 1.6 -c prints), malloc'd, freed by the
 * caller. NULL for an unknown example, or for bytes the server refuses (not an image: the row
 * fails). For the image of crc 0x0348f244 and 25 bytes:
 *   kserve-v2      "L0348f244"                                  .outputs[0].data[0]
 *   torchserve     {"L0348f244":25,"Lfcb70dbb":0}               .
 *   tfserving      {"label":"L0348f244","score":25}             .predictions[0]
 *   openai-vision  {"label":"L0348f244","score":25}             .choices[0].message.content | fromjson
 *                  (the content itself is '{"label": "L0348f244", "score": 25}', with spaces:
 *                  the cell is jq's compact re-print of it)
 *   hf-endpoint    [{"label":"L0348f244","score":25},{"label":"Lfcb70dbb","score":0}]   .
 *   multipart      "L0348f244"                                  .label
 *   google-vision  [{"mid":"/m/0348f244","description":"L0348f244","score":25,"topicality":25},
 *                   {"mid":"/m/fcb70dbb","description":"Lfcb70dbb","score":0,"topicality":0}]
 *                                                               .responses[0].labelAnnotations */
char *pyserver_expected(const char *example, const unsigned char *bytes, size_t len);

#endif
