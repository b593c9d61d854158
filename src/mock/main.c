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

#include "mock/dialects.h"
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
"It also speaks seven other servers' protocols, for a model named classifier (the\n"
"pipelines of examples/*.json; the man page, DIALECTS, has their answers and errors):\n"
"  POST /v2/models/classifier/infer     KServe v2 / Triton (kserve-v2)\n"
"  POST /predictions/classifier         TorchServe, raw image bytes (torchserve)\n"
"  POST /v1/models/classifier:predict   TF Serving (tfserving)\n"
"  POST /v1/chat/completions            OpenAI-compatible, Bearer token (openai-vision)\n"
"  POST /models/classifier              Hugging Face, raw image bytes (hf-endpoint)\n"
"  POST /classifier                     FastAPI UploadFile, multipart part file (multipart)\n"
"  POST /v1/images:annotate             Google Cloud Vision, ?key= (google-vision)\n"
"\n"
"  --host ADDR           address to listen on (default 127.0.0.1)\n"
"  --port N              port, 0 picks a free one (default 8080)\n"
"  --latency-ms [EP=]MS  service time a of every request, in milliseconds (default 0)\n"
"  --latency-dist D      fixed, uniform (on [0, 2*MS]) or exp (mean MS) (default fixed)\n"
"  --slowdown-ms [EP=]MS a server that slows with time, not with load: every second since\n"
"                        the first request adds MS milliseconds to a's service time\n"
"                        (default 0)\n"
"  --per-item-ms [EP=]MS service time b per image: a request of N images takes a + b*N\n"
"                        (default 0)\n"
"  --capacity [EP=]K     serve K requests at once, the others wait in a FIFO (default\n"
"                        unlimited: no queue, every request served as it comes)\n"
"  --queue-max [EP=]Q    with a capacity, at most Q requests wait; one more is answered\n"
"                        503 with Retry-After at once (default unlimited)\n"
"  --batch EP            a batch endpoint: answers a list of results, for one image too\n"
"                        (EP may be all; repeat or give a list: model_03,model_04)\n"
"  --batch-max [EP=]N    refuse (400) requests of more than N images (default 1, or\n"
"                        unlimited on a batch endpoint)\n"
"  --threads N           N event loops on N threads sharing the port (default 1)\n"
"  --seed N              seed of the fault and latency draws (default 1)\n"
"  --error-rate P        fraction of requests answered 500 (default 0)\n"
"  --rate-429 P          fraction answered 429 with Retry-After (default 0)\n"
"  --retry-after S       Retry-After of the 429s and the 503s, in seconds (default 1)\n"
"  --reset-rate P        fraction whose connection is reset, no answer (default 0)\n"
"  --hang-rate P         fraction never answered (default 0)\n"
"  --garbage-rate P      fraction answered 200 with a body that is not JSON (default 0)\n"
"  --reject-rate P       fraction of images answered 400 every time they are sent, at every\n"
"                        endpoint (drawn from the image, not per request): corrupt files\n"
"  --trust-payload       for benchmarks: find im_str by scanning, do not parse the JSON nor\n"
"                        decode the base64 (answers are keyed on the base64 text instead)\n"
"  --token T             the token the OpenAI endpoint (Authorization: Bearer T) and the\n"
"                        Google one (?key=T) require (default: any token, but one)\n"
"  --token-file F        the same, read from F (one trailing newline removed) on every\n"
"                        request, so that it can be rotated while a client runs\n"
"  -h, --help            this text\n"
"\n"
"Faults are drawn once per request, before validation, in the order above; rates are\n"
"fractions from 0 to 1. The dialect endpoints draw them too and answer them in their\n"
"server's shape; they take --latency-ms's value for all endpoints, no capacity nor batch.\n"
"\n"
"[EP=] options set every endpoint, or one: --capacity 4 --capacity model_03=1 gives\n"
"model_03 one slot and the others four. EP is model_01 .. model_05 or all; a value given for\n"
"an endpoint by name wins over one for all, whatever the order; lists are comma-separated\n"
"(--latency-ms model_03=30,model_04=50). K, Q and N take a number or unlimited.\n"
"Capacity is shared by all the threads; see the man page for the details.\n");
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
       O_GARBAGE, O_TRUST, O_ITEM, O_CAP, O_QMAX, O_BATCH, O_BMAX, O_THREADS, O_TOKEN,
       O_TOKEN_FILE, O_REJECT, O_SLOW };

/* The options that take [EP=]VALUE, and what their values may be. */
enum { K_LAT, K_ITEM, K_CAP, K_QMAX, K_BMAX, K_SLOW, N_KINDS };

static const struct kind {
    const char *name;
    int integer;      /* else milliseconds */
    double lo;        /* for integers, unlimited reads as none */
    double none;      /* the stored value of "unlimited"; NAN: not allowed */
    const char *wants;
} KINDS[N_KINDS] = {
    [K_LAT] = {"latency-ms", 0, 0, NAN, "milliseconds (0 or more)"},
    [K_ITEM] = {"per-item-ms", 0, 0, NAN, "milliseconds (0 or more)"},
    [K_CAP] = {"capacity", 1, 1, 0, "a number of requests (1 or more) or unlimited"},
    [K_QMAX] = {"queue-max", 1, 0, -1, "a number of requests (0 or more) or unlimited"},
    [K_BMAX] = {"batch-max", 1, 1, 0, "a number of images (1 or more) or unlimited"},
    [K_SLOW] = {"slowdown-ms", 0, 0, NAN, "milliseconds per second (0 or more)"},
};

/* Each [EP=]VALUE option as given: one value for all, and values by endpoint, which win. */
struct per_ep {
    int all_set, set[MOCK_N_MODELS];
    double all, v[MOCK_N_MODELS];
};

/* "model_0N" → N - 1; "all" → MOCK_N_MODELS; else -1. n is the name's length. */
static int endpoint_of(const char *s, size_t n)
{
    if (n == 3 && !memcmp(s, "all", 3))
        return MOCK_N_MODELS;
    if (n == 8 && !memcmp(s, "model_0", 7) && s[7] >= '1' && s[7] <= '5')
        return s[7] - '1';
    return -1;
}

static int parse_value(const struct kind *k, const char *s, double *out)
{
    if (!isnan(k->none) && !strcmp(s, "unlimited")) {
        *out = k->none;
        return 0;
    }
    if (!k->integer)
        return parse_double(s, k->lo, 3600e3, out);
    uint64_t u;
    if (parse_u64(s, 1000000, &u) != 0 || (double)u < k->lo)
        return -1;
    *out = (double)u;
    return 0;
}

/* One --NAME [EP=]VALUE[,...]; 0 or 2 after printing what is wrong. */
static int parse_per_ep(const struct kind *k, const char *arg, struct per_ep *pe)
{
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", arg) >= (int)sizeof buf)
        return bad("--%s: '%.40s...' is too long", k->name, arg);
    char *save = NULL;
    int any = 0;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        any = 1;
        char *eq = strchr(item, '=');
        int ep = eq ? endpoint_of(item, (size_t)(eq - item)) : MOCK_N_MODELS;
        if (ep < 0)
            return bad("--%s: unknown endpoint '%.*s'; use model_01 .. model_05 or all", k->name,
                       (int)(eq - item), item);
        double v;
        if (parse_value(k, eq ? eq + 1 : item, &v) != 0)
            return bad("--%s wants %s, optionally as model_0N=VALUE, not '%s'", k->name, k->wants,
                       eq ? eq + 1 : item);
        if (ep == MOCK_N_MODELS) {
            pe->all_set = 1;
            pe->all = v;
        } else {
            pe->set[ep] = 1;
            pe->v[ep] = v;
        }
    }
    if (!any)
        return bad("--%s wants %s, not '%s'", k->name, k->wants, arg);
    return 0;
}

/* --batch EP[,EP...]; 0 or 2. */
static int parse_batch(const char *arg, int batch[MOCK_N_MODELS])
{
    const char *p = arg;
    do {
        size_t n = strcspn(p, ",");
        int ep = endpoint_of(p, n);
        if (ep < 0)
            return bad("--batch wants an endpoint (model_01 .. model_05, or all), not '%s'", arg);
        for (int m = 0; m < MOCK_N_MODELS; m++)
            batch[m] |= ep == MOCK_N_MODELS || ep == m;
        p += n;
    } while (*p++ == ',');
    return 0;
}

/* The value of an [EP=]VALUE option for endpoint m, or dflt when it was not given. */
static double resolve(const struct per_ep *pe, int m, double dflt)
{
    return pe->set[m] ? pe->v[m] : pe->all_set ? pe->all : dflt;
}

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
        {"reject-rate", required_argument, NULL, O_REJECT},
        {"trust-payload", no_argument, NULL, O_TRUST},
        {"per-item-ms", required_argument, NULL, O_ITEM},
        {"capacity", required_argument, NULL, O_CAP},
        {"queue-max", required_argument, NULL, O_QMAX},
        {"batch", required_argument, NULL, O_BATCH},
        {"batch-max", required_argument, NULL, O_BMAX},
        {"threads", required_argument, NULL, O_THREADS},
        {"token", required_argument, NULL, O_TOKEN},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"slowdown-ms", required_argument, NULL, O_SLOW},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const int fault_of[] = {
        [O_ERR - O_ERR] = MOCK_FAULT_ERROR, [O_429 - O_ERR] = MOCK_FAULT_429,
        [O_RESET - O_ERR] = MOCK_FAULT_RESET, [O_HANG - O_ERR] = MOCK_FAULT_HANG,
        [O_GARBAGE - O_ERR] = MOCK_FAULT_GARBAGE,
    };
    opterr = 0;
    int c, idx, rc;
    uint64_t u;
    struct per_ep pe[N_KINDS];
    int batch[MOCK_N_MODELS] = {0};
    memset(pe, 0, sizeof pe);
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
        case O_LAT: case O_ITEM: case O_CAP: case O_QMAX: case O_BMAX: case O_SLOW: {
            int k = c == O_LAT ? K_LAT : c == O_ITEM ? K_ITEM : c == O_CAP ? K_CAP
                  : c == O_QMAX ? K_QMAX : c == O_SLOW ? K_SLOW : K_BMAX;
            if ((rc = parse_per_ep(&KINDS[k], optarg, &pe[k])) != 0)
                return rc;
            break;
        }
        case O_BATCH:
            if ((rc = parse_batch(optarg, batch)) != 0)
                return rc;
            break;
        case O_THREADS:
            if (parse_u64(optarg, 64, &u) != 0 || u < 1)
                return bad("--threads wants a number from 1 to 64, not '%s'", optarg);
            cfg->threads = (int)u;
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
        case O_REJECT:
            if (parse_double(optarg, 0, 1, &cfg->reject_rate) != 0)
                return bad("--reject-rate wants a fraction from 0 to 1, not '%s'", optarg);
            break;
        case O_RETRY:
            if (parse_u64(optarg, 86400, &u) != 0)
                return bad("--retry-after wants seconds from 0 to 86400, not '%s'", optarg);
            cfg->retry_after = (int)u;
            break;
        case O_TRUST:
            cfg->trust_payload = 1;
            break;
        case O_TOKEN: /* the value is never printed: not in errors, not in --help */
            if (!*optarg)
                return bad("--token wants a token, not an empty string");
            cfg->token = optarg;
            break;
        case O_TOKEN_FILE: {
            char tok[4096];
            if (mock_token_read(optarg, tok, sizeof tok) != 0)
                return bad("--token-file %s: cannot read it (a file of at most 4095 bytes, no NUL)",
                           optarg);
            cfg->token_file = optarg;
            break;
        }
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
    if (cfg->token && cfg->token_file)
        return bad("--token and --token-file: give one of them");
    /* The dialects have no per-endpoint settings: they take the value given for all. */
    cfg->dialect_latency_ms = pe[K_LAT].all_set ? pe[K_LAT].all : 0;
    cfg->dialect_slowdown_ms = pe[K_SLOW].all_set ? pe[K_SLOW].all : 0;
    for (int m = 0; m < MOCK_N_MODELS; m++) {
        struct mock_endpoint *ep = &cfg->ep[m];
        ep->batch = batch[m];
        ep->latency_ms = resolve(&pe[K_LAT], m, ep->latency_ms);
        ep->per_item_ms = resolve(&pe[K_ITEM], m, ep->per_item_ms);
        ep->slowdown_ms = resolve(&pe[K_SLOW], m, ep->slowdown_ms);
        ep->capacity = (int)resolve(&pe[K_CAP], m, ep->capacity);
        ep->queue_max = (int)resolve(&pe[K_QMAX], m, ep->queue_max);
        ep->batch_max = (int)resolve(&pe[K_BMAX], m, ep->batch ? 0 : ep->batch_max);
    }
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
