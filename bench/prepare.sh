#!/bin/sh
# make bench-prepare: image preparation (src/prepare/, libvips) beside Pillow, on camera-like
# photos made here with Pillow (tests/helpers/images.py: 4000 x 3000 and 8000 x 6000 JPEGs at
# quality 92, EXIF orientations 1, 6, 8, 3 and a GPS block), kept under out/bench-prepare.
#
#   1. CPU per 12 MP JPEG prepared to 1024 px (upright, stripped, JPEG quality 85), one image at
#      a time on one core: bench-prepare cpu and bench/prepare_pillow.py (draft + thumbnail +
#      exif_transpose + save) taking turns, ROUNDS (3) times each, each the best of 3 passes;
#      then the best of each, and the bytes before and after.
#   2. Where the time goes: perf record of bench-prepare cpu, by library (when perf works here).
#   3. prep_peak_bytes and prep_source_bytes against the peak RSS one preparation really adds,
#      for a photo as baseline and progressive JPEG, PNG, WebP, TIFF and HEIC.
#   4. The peak RSS of 8000 x 6000 photos prepared (and four crops cut out of each) by 1 and 4
#      threads under a 200 MB byte budget, with glibc's malloc as it is and tuned
#      (MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=1048576).
#   5. Whole annotate runs against a Pillow server doing a classifier's preprocessing
#      (tests/servers/prepsrv.py), three stages that take the image: the 12 MP photos sent as
#      stored, then prepared to 1024 px; images/s and bytes on the wire (bench/prepare_run.py).
#   6. The peak RSS of whole runs over the 8000 x 6000 photos (a detector at 1024 px, four crops
#      of 224 px each) with --max-memory 200000000, under every strategy.
set -eu
B=${1:-build}
P=$B/bench-prepare
O=out/bench-prepare
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
ROUNDS=${ROUNDS:-3}
mkdir -p $O
[ -f $O/12mp/photo019.jpg ] || $PY tests/helpers/images.py camera $O/12mp 20 4000 3000
[ -f $O/48mp/photo005.jpg ] || $PY tests/helpers/images.py camera $O/48mp 6 8000 6000
[ -f $O/variants/photo.heic ] || $PY tests/helpers/images.py variants $O/12mp/photo000.jpg $O/variants

echo "== CPU per 12 MP camera JPEG prepared to 1024 px, one core ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
: >$O/cpu.txt
r=0
while [ $r -lt $ROUNDS ]; do
  $P cpu $O/12mp 1024 85 3 | tee -a $O/cpu.txt
  $PY bench/prepare_pillow.py $O/12mp 1024 85 3 | tee -a $O/cpu.txt
  r=$((r + 1))
done
awk '/^annotate/ { for (i = 1; i < NF; i++) if ($i == "CPU") a = (a == "" || $(i+1) < a) ? $(i+1) : a }
     /^Pillow/   { for (i = 1; i < NF; i++) if ($i == "CPU") p = (p == "" || $(i+1) < p) ? $(i+1) : p }
     END { printf "best: annotate %.1f ms/image, Pillow %.1f ms/image: annotate uses %.0f%% of Pillow'"'"'s CPU\n", a, p, 100 * a / p }' $O/cpu.txt

echo
echo "== Where annotate's time goes (perf record, share of samples by library)"
if perf record -q -F 2000 -o $O/perf.data $P cpu $O/12mp 1024 85 2 >/dev/null 2>&1; then
  perf report -i $O/perf.data --no-children --sort dso 2>/dev/null | grep -E '^ +[0-9]' | head -8
else
  echo "perf cannot record here (kernel.perf_event_paranoid, or no perf): no profile"
fi

echo
echo "== Estimates against the peak RSS one preparation adds (4000 x 3000)"
for f in baseline.jpg progressive.jpg photo.png photo.webp photo.tif photo.heic; do
  for w in max1024 cover224 full crop; do
    $P measure $O/variants/$f $w || echo "   ^ the estimate is below the measured peak"
  done
done

echo
echo "== 8000 x 6000 photos under a 200 MB byte budget (each: 1024 px, then four crops of 224 px)"
for t in 1 4; do
  printf 'malloc as is:  '; $P memory $O/48mp 200000000 $t
  printf 'malloc tuned:  '; MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 $P memory $O/48mp 200000000 $t
done

echo
echo "== Whole runs against a Pillow server (classifier preprocessing), 12 MP camera JPEGs, 3 stages"
$PY bench/prepare_run.py throughput $B/annotate $O/12mp

echo
echo "== Whole runs over 8000 x 6000 photos with --max-memory 200000000 (1024 px detector, 4 crops of 224 px)"
$PY bench/prepare_run.py memory $B/annotate $O/48mp 200000000
