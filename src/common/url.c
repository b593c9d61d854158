/* url: see url.h. */
#include "common/url.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A URL as written in the file: any blank or control character is refused here, because curl
 * would send it as is (or refuse it) and every image would fail with the same error. */
int url_chars_problem(const char *url, char *what, size_t wl)
{
    for (const char *c = url; *c; c++) {
        unsigned char u = (unsigned char)*c;
        size_t at = (size_t)(c - url) + 1;
        if (u == ' ' || u == '\t')
            return snprintf(what, wl, "holds a blank at character %zu (write a space as %%20)", at), -1;
        if (u == '\r' || u == '\n')
            return snprintf(what, wl, "holds a line break at character %zu", at), -1;
        if (u < 0x20 || u == 0x7f)
            return snprintf(what, wl, "holds a control character (0x%02x) at character %zu", u, at), -1;
    }
    return 0;
}

int url_check(const char *url, char *err, size_t errlen)
{
    char what[128];
    size_t sl = !strncasecmp(url, "http://", 7) ? 7 : !strncasecmp(url, "https://", 8) ? 8 : 0;
    if (!sl)
        return snprintf(err, errlen, "must start with http:// or https://"), -1;
    if (url_chars_problem(url, what, sizeof what))
        return snprintf(err, errlen, "%s", what), -1;
    /* libcurl takes "http:///m" as the host m and "http://h:" as port 80: the authority (up to
     * the first / ? or #) must be there, and a ':' ending it must have a port after it. */
    size_t al = strcspn(url + sl, "/?#");
    if (al == 0)
        return snprintf(err, errlen, "has no host after %.*s", (int)sl, url), -1;
    if (url[sl + al - 1] == ':')
        return snprintf(err, errlen, "has an empty port after the ':' (write the port, e.g. :8080, or no ':')"), -1;
    CURLU *u = curl_url();
    if (!u)
        return snprintf(err, errlen, "out of memory"), -1;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    char *port = NULL;
    if (rc)
        snprintf(err, errlen, "is not a URL libcurl reads: %s", curl_url_strerror(rc));
    else if (!curl_url_get(u, CURLUPART_PORT, &port, 0) && !strcmp(port, "0"))
        snprintf(err, errlen, "has port 0, which no server listens on");
    int bad = rc || (port && !strcmp(port, "0"));
    curl_free(port);
    curl_url_cleanup(u);
    return bad ? -1 : 0;
}
