/* mock-model-server: options → config → server. The only place in the mock that exits.
 *
 * Exit status: 0 after SIGINT or SIGTERM, 1 when the server cannot start or its loop fails,
 * 2 for a bad command line. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mock/server.h"

#define PROG "mock-model-server"

static void usage(FILE *f)
{
    fprintf(f,
"usage: " PROG " [options]\n"
"\n"
"A deterministic stand-in for annotate's model servers: POST /model_01 .. /model_05 with\n"
"[{\"im_str\": \"<base64>\", \"model_03\": <json>}] answer {\"result\": ...}; GET /stats shows\n"
"the counters, POST /stats/reset zeroes them. Prints \"listening on HOST:PORT\" once ready;\n"
"SIGINT or SIGTERM stop it (exit 0).\n"
"\n"
"  --host ADDR           address to listen on (default 127.0.0.1)\n"
"  --port N              port, 0 picks a free one (default 8080)\n"
"  --latency-ms MS       delay every answer by MS milliseconds (default 0)\n"
"  --latency-dist D      fixed, uniform (on [0, 2*MS]) or exp (mean MS) (default fixed)\n"
"  --seed N              seed of the fault and latency draws (default 1)\n"
"  --error-rate P        fraction of requests answered 500 (default 0)\n"
"  --rate-429 P          fraction answered 429 with Retry-After (default 0)\n"
"  --retry-after S       the 429's Retry-After, in seconds (default 1)\n"
"  --reset-rate P        fraction whose connection is reset, no answer (default 0)\n"
"  --hang-rate P         fraction never answered (default 0)\n"
"  --garbage-rate P      fraction answered 200 with a body that is not JSON (default 0)\n"
"  --trust-payload       for benchmarks: find im_str by scanning, do not parse the JSON nor\n"
"                        decode the base64 (answers are keyed on the base64 text instead)\n"
"  -h, --help            this text\n"
"\n"
"Faults are drawn once per request, before validation, in the order above; rates are\n"
"fractions from 0 to 1.\n");
}

/* One line on stderr saying what is wrong and where to look; returns the exit status 2. */
__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "; run " PROG " --help for the options\n");
    va_end(ap);
    return 2;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

enum { O_HOST = 256, O_PORT, O_LAT, O_DIST, O_SEED, O_ERR, O_429, O_RETRY, O_RESET, O_HANG,
       O_GARBAGE, O_TRUST };

/* Fills cfg from argv; 0, 1 when --help was asked for, or 2 after printing what is wrong. */
static int parse_args(int argc, char **argv, struct mock_config *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"latency-ms", required_argument, NULL, O_LAT},
        {"latency-dist", required_argument, NULL, O_DIST},
        {"seed", required_argument, NULL, O_SEED},
        {"error-rate", required_argument, NULL, O_ERR},
        {"rate-429", required_argument, NULL, O_429},
        {"retry-after", required_argument, NULL, O_RETRY},
        {"reset-rate", required_argument, NULL, O_RESET},
        {"hang-rate", required_argument, NULL, O_HANG},
        {"garbage-rate", required_argument, NULL, O_GARBAGE},
        {"trust-payload", no_argument, NULL, O_TRUST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const int fault_of[] = {
        [O_ERR - O_ERR] = MOCK_FAULT_ERROR, [O_429 - O_ERR] = MOCK_FAULT_429,
        [O_RESET - O_ERR] = MOCK_FAULT_RESET, [O_HANG - O_ERR] = MOCK_FAULT_HANG,
        [O_GARBAGE - O_ERR] = MOCK_FAULT_GARBAGE,
    };
    opterr = 0;
    int c, idx;
    uint64_t u;
    while ((c = getopt_long(argc, argv, ":h", opts, &idx)) != -1) {
        const char *name = argv[optind - 1];
        switch (c) {
        case 'h':
            return 1;
        case O_HOST:
            if (!*optarg)
                return bad("--host wants an address, not an empty string");
            cfg->host = optarg;
            break;
        case O_PORT:
            if (parse_u64(optarg, 65535, &u) != 0)
                return bad("--port wants a number from 0 to 65535, not '%s'", optarg);
            cfg->port = (int)u;
            break;
        case O_LAT:
            if (parse_double(optarg, 0, 3600e3, &cfg->latency_ms) != 0)
                return bad("--latency-ms wants milliseconds (0 or more), not '%s'", optarg);
            break;
        case O_DIST:
            if (!strcmp(optarg, "fixed"))
                cfg->latency_dist = MOCK_LAT_FIXED;
            else if (!strcmp(optarg, "uniform"))
                cfg->latency_dist = MOCK_LAT_UNIFORM;
            else if (!strcmp(optarg, "exp"))
                cfg->latency_dist = MOCK_LAT_EXP;
            else
                return bad("--latency-dist wants fixed, uniform or exp, not '%s'", optarg);
            break;
        case O_SEED:
            if (parse_u64(optarg, UINT64_MAX, &cfg->seed) != 0)
                return bad("--seed wants a non-negative integer, not '%s'", optarg);
            break;
        case O_ERR: case O_429: case O_RESET: case O_HANG: case O_GARBAGE:
            if (parse_double(optarg, 0, 1, &cfg->rate[fault_of[c - O_ERR]]) != 0)
                return bad("--%s wants a fraction from 0 to 1, not '%s'", opts[idx].name, optarg);
            break;
        case O_RETRY:
            if (parse_u64(optarg, 86400, &u) != 0)
                return bad("--retry-after wants seconds from 0 to 86400, not '%s'", optarg);
            cfg->retry_after = (int)u;
            break;
        case O_TRUST:
            cfg->trust_payload = 1;
            break;
        case ':':
            return bad("%s needs a value", name);
        default: /* '?': optopt is set when the option is known but given a value */
            if (strncmp(name, "--", 2) != 0)
                return bad("unknown option '-%c'", optopt);
            if (optopt)
                return bad("%s takes no value", name);
            return bad("unknown option '%s'", name);
        }
    }
    if (optind < argc)
        return bad("unexpected argument '%s'", argv[optind]);
    return 0;
}

int main(int argc, char **argv)
{
    struct mock_config cfg;
    mock_config_default(&cfg);
    int rc = parse_args(argc, argv, &cfg);
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc != 0)
        return rc;

    char err[256];
    mock_server *s = mock_server_new(&cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    /* Tests and scripts read this line to learn the port: print it only once bound. */
    const char *fmt = strchr(cfg.host, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n";
    printf(fmt, cfg.host, mock_server_port(s));
    fflush(stdout);
    rc = mock_server_run(s, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, PROG ": %s\n", err);
    mock_server_free(s);
    libevent_global_shutdown();
    return rc == 0 ? 0 : 1;
}
