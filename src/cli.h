/* cli: the command line. The table of options (config.h) serves the parser and --help, so the
 * help cannot miss an option the parser accepts. */
#ifndef ANNOTATE_CLI_H
#define ANNOTATE_CLI_H

#include <stdio.h>
#include "config.h"
#include "version.h"

/* Parses argv (after the program name and an optional subcommand) into cfg, loading the
 * pipeline. Returns 0, 1 when --help or --version was handled (exit 0), or -1 with a one-line
 * message in err (exit 2). bench, when not NULL: argv is annotate bench's command line, whose
 * options of its own (the table's scopes) are stored into *bench. */
int cli_parse(int argc, char **argv, struct config *cfg, struct bench_opts *bench, char *err, size_t errlen);

void cli_usage(FILE *f, int bench);

/* Every long option name the parser accepts (NULL-terminated), for the tests. */
const char *const *cli_option_names(void);

void config_free(struct config *cfg);

#endif
