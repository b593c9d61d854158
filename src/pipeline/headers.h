/* headers: the HTTP headers of a pipeline's stages, and the secrets they carry.
 *
 * Three places give headers, each as "Name: value" templates: a stage's own "headers", the
 * file's "defaults": "headers" (both parsed by headers_parse) and --header on the command line
 * (pipeline_add_header). For one name, compared ignoring case, exactly one is sent: the first of
 * the stage's, the defaults', --header's. After them come the fixed ones, each unless a user
 * header of its name replaces it: "Content-Type: application/json" for a JSON body (a raw or
 * multipart body's type is the stage's own, the image's or the boundary's: a defaults' or
 * --header's Content-Type is not sent with it) and "Expect:" (no 100-continue round trip).
 *
 * A value may use ${VAR}, the environment's value, and ${file:PATH}, the content of a regular
 * file of at most 64 KiB with one trailing newline (LF or CR LF) removed. An unset variable, a
 * file that cannot be read, and a value holding a line break or a NUL are errors that name the
 * header and the variable or the path, never a value. Each value a ${VAR} or ${file:PATH} gives
 * (at every read, so a rotated token's new value too) and each credential header's value is
 * registered as a secret (common/secrets.h), so that no text made from an answer shows it.
 * Memory that held an expanded value (ours, and curl's copies in a list) is wiped before it is
 * freed, and a file is read with read(2) straight into that memory, so no stdio buffer keeps a
 * copy.
 *
 * The templates never change after parsing. A stage's list, built by pipeline_resolve (or
 * adopted from the parent in a worker process), is what changes during a run: when a header
 * value comes from a file, a 401 may make pipeline_refresh_headers read the files again and
 * replace the list. That state sits in a struct stage_headers that the stage points to, so a
 * run that holds the pipeline as const reaches it without casting const away; a lock guards it,
 * and a list that was replaced stays valid until pipeline_free, because a request in flight may
 * still hold it. */
#ifndef ANNOTATE_HEADERS_H
#define ANNOTATE_HEADERS_H

#include <stddef.h>
#include <curl/curl.h>

struct cJSON;
struct pipeline;
struct stage;

/* A stage's header list as sent now, its generation and the lists it replaced (opaque). */
struct stage_headers;

/* ---- for everyone ---- */

/* Adds a header for every stage: a --header line, "Name: value". A stage's or the defaults'
 * header of the same name replaces it; two --header lines of one name are an error. The value
 * is expanded by pipeline_resolve like the file's. Returns 0, or -1 with err naming the header
 * (never showing the value). */
int pipeline_add_header(struct pipeline *p, const char *line, char *err, size_t errlen);

/* Stage s's header list as it is now (NULL before pipeline_resolve) and, when gen is not NULL,
 * its generation. Thread-safe; the list stays valid until pipeline_free. */
const struct curl_slist *pipeline_headers(const struct stage *s, unsigned *gen);

/* After a server answered 401 to a request sent with generation gen of stage i's headers: when a
 * header value comes from a file, the files are read again and, if that changes the headers, the
 * stage's list is replaced. Returns 1 when the headers now differ from generation gen (this call
 * or another one replaced them: the request is worth retrying), else 0. Thread-safe. */
int pipeline_refresh_headers(const struct pipeline *p, int i, unsigned gen);

/* 1 when one of the n "Name: value" lines is named as the line (or bare name) name is, ignoring
 * case. */
int header_named(char *const *lines, int n, const char *name);

/* ---- for the pipeline's parser and resolver (pipeline.c) ---- */

#define HEADERS_OOM (-2)

/* A "headers" object (a stage's or the defaults') into *n_out "Name: value" templates in *out
 * (owned by the pipeline: headers_free). Returns 0; -1 with what is wrong in what (without a
 * prefix: the caller says whose headers they are), naming a header but never its value; or
 * HEADERS_OOM. *out may be set on failure too. */
int headers_parse(const struct cJSON *obj, char ***out, int *n_out, char *what, size_t wl);

/* The defaults' and --header's lines with ${...} expanded: what every stage's list is built from.
 * They hold secrets: header_sources_wipe. */
struct header_sources {
    char **defaults, **cli;
    int n_defaults, n_cli;
};

/* Expands p's defaults' and --header's templates into hs. defaults_where names the defaults in a
 * message ("FILE: \"defaults\""). Returns 0, or -1 with err (hs then holds nothing). */
int header_sources_expand(const struct pipeline *p, const char *defaults_where, struct header_sources *hs,
                          char *err, size_t errlen);

/* Wipes and frees what header_sources_expand made. */
void header_sources_wipe(struct header_sources *hs);

/* Builds stage s's list (its own lines expanded, then hs's, then the fixed ones), replacing the
 * one it had, and notes whether a value comes from a file. where names the stage in a message
 * ("FILE: stage 2 (m)"). Returns 0, or -1 with err. Not thread-safe: before the run. */
int headers_resolve_stage(const struct pipeline *p, struct stage *s, const struct header_sources *hs,
                          const char *where, char *err, size_t errlen);

/* Sets stage s's list to n lines another process built (a worker takes its parent's). 0, or -1
 * when out of memory. Not thread-safe: before the run. */
int headers_adopt(const struct pipeline *p, struct stage *s, const char *const *lines, int n);

/* Wipes and frees every header template and list of p (pipeline_free). */
void headers_free(struct pipeline *p);

#endif
