#!/bin/sh
# make bench-s3list: lists N keys (default 1,000,000) from a synthetic S3 bucket in pages of 1000
# with annotate's S3 client (bench/bench_s3list.c) and prints the resident memory as pages go by:
# it must stay flat. The bucket is tests/servers/s3sig.py --synthetic N, which also checks every
# page request's SigV4 signature with botocore and answers with encoding-type=url keys, as AWS
# does. The server is started here on a free port and stopped by its PID.
set -eu
B=${1:-build}
N=${2:-1000000}
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
mkdir -p out
log=out/bench-s3list-server.log
$PY tests/servers/s3sig.py --key AKIABENCHKEY00000000 --secret bench-secret --synthetic "$N" >$log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT INT TERM
i=0
until grep -q "^listening on" $log; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then echo "s3list.sh: the server did not start:"; cat $log; exit 1; fi
  sleep 0.1
done
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' $log)
AWS_ACCESS_KEY_ID=AKIABENCHKEY00000000 AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_CONFIG_FILE=/dev/null \
  $B/bench-s3list s3://synth/ "$N"
