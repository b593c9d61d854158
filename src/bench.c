/* bench: see bench.h. (Being written: the measurement loop lands with issue #5.) */
#include "bench.h"

#include <stdio.h>

int bench_main(struct config *cfg, struct bench_opts *b)
{
    (void)cfg;
    (void)b;
    fprintf(stderr, "annotate bench: not built yet\n");
    return 2;
}
