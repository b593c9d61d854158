/* version: annotate's version, for --version and the User-Agent every request carries (servers'
 * access logs name the client). docs/annotate.1 names it too. */
#ifndef ANNOTATE_VERSION_H
#define ANNOTATE_VERSION_H

#define ANNOTATE_VERSION "0.1.0"

#endif
