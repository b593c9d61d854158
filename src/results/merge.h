/* merge: `annotate merge [--prefer first|last] OUT.csv SHARD.csv...` combines the results of
 * shards (or of several runs) into one file with one row per image: an ok row wins over a failed
 * one, otherwise the first row seen. The inputs must share one header (CSV) or one set of keys
 * (JSON Lines, resume.h): all of one format, which the output is written in. They are read with
 * results_rows, as --resume reads a file, and refused where it refuses one. Refused too (exit 2,
 * nothing written): an image with two ok rows whose stage cells differ, unless --prefer says
 * which wins; two inputs that spell one folder differently (./ds and ds). */
#ifndef ANNOTATE_MERGE_H
#define ANNOTATE_MERGE_H

/* argv[0] is "merge". Returns the exit status (0, or 2 with a message on stderr). */
int merge_main(int argc, char **argv);

#endif
