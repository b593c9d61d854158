/* url: the checks every URL a request goes to passes before the first request, so that a
 * mistake in one exits 2 at the start instead of failing every image. */
#ifndef ANNOTATE_URL_H
#define ANNOTATE_URL_H

#include <stddef.h>

/* A blank or control character in url (curl would send it as is, or refuse it): 0, or -1 with
 * what and where in what ("holds a blank at character 12 ..."). */
int url_chars_problem(const char *url, char *what, size_t wl);

/* Checks a URL with libcurl's URL API (curl_url, the parser the requests use): http:// or
 * https:// (in any case), a host, a port (when a ':' says one comes) from 1 to 65535, nothing libcurl refuses,
 * and url_chars_problem. Returns 0, or -1 with what is wrong in err, worded to follow the URL
 * ("has an empty port ...": the caller names the URL or where it comes from, never a secret in
 * it). */
int url_check(const char *url, char *err, size_t errlen);

#endif
