/* options: the one table that describes everything a run (struct config, config.h) and the
 * benchmark (struct bench_opts) are told on the command line.
 *
 * Every option of either command is one row of that table: its name, metavar, default and help
 * (for --help), where its value is stored (a field of struct config or struct bench_opts), its
 * type and range, and two marks: whether a worker process is sent it, and whether bench sets it
 * itself for the runs it starts. Three things are made from the rows, so that adding an option
 * is adding its row:
 *   - the parser (config_set: the row's type parses and range-checks the value, or the row's own
 *     function when the value is more than a number or a string), which cli.c drives with getopt;
 *   - the worker's configuration frame (ipc.h): the rows marked for workers, written back as a
 *     command line (config_args) and read in the worker by the same parser (config_apply_args);
 *   - the command line of the runs `annotate bench` starts: every option of both commands that
 *     bench does not set itself, when its value is not the default.
 * A value is written back by one printer per type (a number as the parser reads it, a string as
 * it is), or by the row's own printer where the value is more than that (--strategy, --encoder,
 * --header). config_table_error refuses a table in which an option of both commands can be
 * neither written back nor is bench's own, or a worker's option cannot be written from struct
 * config alone: a row cannot be added and silently dropped. */
#ifndef ANNOTATE_OPTIONS_H
#define ANNOTATE_OPTIONS_H

#include <stdarg.h>
#include <stddef.h>
#include "config.h"

const char *strategy_name(enum strategy s);
int strategy_from_name(const char *name, enum strategy *out);

/* Fills cfg (and bench, unless NULL) with every default. */
void config_defaults(struct config *cfg, struct bench_opts *bench);

/* ---- the table ---- */

enum config_scope { SCOPE_RUN, SCOPE_BENCH, SCOPE_BOTH }; /* annotate DIR, annotate bench DIR, or both */
enum config_type {
    OPT_FLAG,   /* no value: sets an int to 1 */
    OPT_LONG,   /* a whole number in [ilo, ihi] (or 0 with zero) into an integer field */
    OPT_DOUBLE, /* a number in [dlo, dhi] (or 0 with zero) */
    OPT_STRING, /* kept as given */
    OPT_CUSTOM, /* parsed by the row's set function */
    OPT_ACTION  /* --help, --version: the command line does it and ends */
};
enum config_where { AT_NONE, AT_CFG, AT_BENCH };
/* The C type of the field a row names, found by _Generic from the field itself, so that a row
 * cannot claim an int is a long. */
enum config_ctype { CT_NONE, CT_INT, CT_LONG, CT_ULONG, CT_ULLONG, CT_DOUBLE, CT_STR, CT_OTHER };

/* What setting an option may write: the two structs being filled, and the --header lines met so
 * far (they are added to the pipeline once it is loaded). */
struct config_parse {
    struct config *cfg;
    struct bench_opts *bench; /* NULL for a run */
    const char **headers;     /* room for one per word parsed; NULL where --header cannot come */
    int n_headers;
    int from_parent;          /* a worker's frame: values its parent has checked already, so what
                               * is outside the process (a --cacert file) is not checked again */
};

struct config_option;
/* Parses arg into ps. 0, or -1 with a one-line message in err. */
typedef int (*config_set_fn)(const struct config_option *o, const char *arg, struct config_parse *ps, char *err,
                             size_t errlen);
/* The option's k-th value as its argument text (k > 0 only for a repeated option): a string of
 * cfg or b, or written into buf; "" for a flag that is set; NULL when there is no k-th value (an
 * unset flag or string, the end of a list). b may be NULL (a worker's frame). */
typedef const char *(*config_print_fn)(const struct config_option *o, const struct config *cfg,
                                       const struct bench_opts *b, int k, char *buf, size_t len);

struct config_option {
    const char *name;
    const char *arg;   /* metavar, or NULL for a flag */
    const char *def;   /* default as shown in --help, or NULL */
    const char *help;
    enum config_scope scope;
    enum config_type type;
    enum config_where where; /* the field the value is stored in (a custom row: AT_NONE, or the
                              * field its value is printed from) */
    size_t off;        /* of the field in struct config or struct bench_opts */
    enum config_ctype ctype;
    size_t size;       /* of the field */
    long ilo, ihi;     /* OPT_LONG: the range; ihi LONG_MAX: no upper bound */
    double dlo, dhi;   /* OPT_DOUBLE: the range */
    const char *unit;  /* what to give, for the message: "a number", "milliseconds" */
    const char *zero;  /* when set, 0 is accepted besides the range, meaning this ("0 for no limit") */
    config_set_fn set; /* OPT_CUSTOM */
    config_print_fn print; /* the value written back, when it is more than its field as a number or a string */
    int worker;        /* a worker process is sent it (ipc.h's configuration frame) */
    int bench_own;     /* of both commands, but bench sets it itself for each run it starts */
};

extern const struct config_option CONFIG_OPTIONS[];
extern const int CONFIG_N_OPTIONS;
#define CONFIG_MAX_OPTIONS 128 /* the table holds no more (checked when options.c is compiled) */

/* The row of --NAME, given as the len bytes at name (no "--"); NULL if none. */
const struct config_option *config_option_named(const char *name, size_t len);

/* Sets the option from arg (NULL for a flag): 0, 1 for an OPT_ACTION row (the caller does it),
 * or -1 with a message in err naming the option, the value and what to give. */
int config_set(const struct config_option *o, const char *arg, struct config_parse *ps, char *err, size_t errlen);

/* The k-th value of o as text (see config_print_fn), through the row's printer or its type's. */
const char *config_value(const struct config_option *o, const struct config *cfg, const struct bench_opts *b, int k,
                         char *buf, size_t len);

/* The table's own consistency (each row's type against its field's C type and its range, and the
 * marks above). 0, or -1 with the row named in err: a bug, caught by the first test run. */
int config_table_error(char *err, size_t errlen);

/* Writes err and returns -1. */
int config_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- the configuration written back as a command line ---- */

/* A command line being built. Words point into store, or to strings that outlive it (cfg's). */
struct config_argv {
    const char *argv[160];
    int argc;
    char store[8192];
    size_t used;
    int bad; /* a word did not fit, or was NULL */
};

void config_argv_reset(struct config_argv *a);
void config_argv_add(struct config_argv *a, const char *word);
void config_argv_addf(struct config_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

enum config_for {
    CONFIG_FOR_WORKER,   /* every row marked worker, whatever its value */
    CONFIG_FOR_BENCH_RUN /* every row of both commands that bench does not set itself, when its
                          * value is not the default */
};

/* Appends "--NAME VALUE" (or "--NAME" for a flag) of the rows for `to`, in table order. 0, or -1
 * when a->bad. */
int config_args(const struct config *cfg, const struct bench_opts *b, enum config_for to, struct config_argv *a);

/* Reads back what config_args wrote: n words, "--NAME" each followed by its value unless a flag.
 * 0, or -1 with err. */
int config_apply_args(const char *const *words, int n, struct config_parse *ps, char *err, size_t errlen);

#endif
