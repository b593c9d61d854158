#!/bin/sh
# make check runs this first: the SUITES list of tests/main.c must name exactly the
# register_NAME() functions that tests/*/test_*.c define. A listed name without its function
# already fails the link; this catches the other way round, a test file whose suites would
# never run because nobody registers them, and a name listed twice.
#
#   sh tests/helpers/check-suites.sh [TESTS_DIR]
set -eu
dir=${1:-tests}
main=$dir/main.c
[ -f "$main" ] || { echo "check-suites: $main not found" >&2; exit 2; }

# The X(name) entries of the SUITES macro: from "#define SUITES(X)" to its first line that does
# not end in a backslash.
listed=$(awk '
  /^#define SUITES\(X\)/ { on = 1 }
  on {
    line = $0
    while (match(line, /X\([A-Za-z0-9_]+\)/)) {
      print substr(line, RSTART + 2, RLENGTH - 3)
      line = substr(line, RSTART + RLENGTH)
    }
    if ($0 !~ /\\[ \t]*$/) on = 0
  }' "$main")
# Definitions, not declarations: "int register_NAME(void)" at the start of a line, no ";".
defined=$(grep -h -E '^int[ \t]+register_[A-Za-z0-9_]+[ \t]*\([ \t]*void[ \t]*\)[^;]*$' "$dir"/*/test_*.c |
          sed -E 's/^int[ \t]+register_([A-Za-z0-9_]+).*/\1/')

[ -n "$listed" ] || { echo "check-suites: no SUITES(X) list found in $main" >&2; exit 1; }
bad=0
dups=$(printf '%s\n' "$listed" | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "check-suites: listed more than once in $main: $(echo $dups)" >&2; bad=1
fi
dups=$(printf '%s\n' "$defined" | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "check-suites: register_ functions defined more than once: $(echo $dups)" >&2; bad=1
fi
missing=$(printf '%s\n' "$defined" | sort -u | while read -r n; do
  printf '%s\n' "$listed" | grep -qx "$n" || echo "$n"; done)
if [ -n "$missing" ]; then
  for n in $missing; do
    where=$(grep -l -E "^int[ \t]+register_$n[ \t]*\(" "$dir"/*/test_*.c | tr '\n' ' ')
    echo "check-suites: register_$n() (${where% }) is not in SUITES of $main: its tests would never run" >&2
  done
  bad=1
fi
extra=$(printf '%s\n' "$listed" | sort -u | while read -r n; do
  printf '%s\n' "$defined" | grep -qx "$n" || echo "$n"; done)
if [ -n "$extra" ]; then
  echo "check-suites: SUITES of $main lists suites no tests/*/test_*.c defines: $(echo $extra)" >&2; bad=1
fi
exit $bad
