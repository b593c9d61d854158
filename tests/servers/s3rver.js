// s3rver (the npm package, an S3 server written in Node.js) for the tests, on a free port of
// 127.0.0.1:
//
//     node tests/servers/s3rver.js NODE_MODULES DATA_DIR [BUCKET...]
//
// NODE_MODULES is the folder s3rver was installed into (build/node/node_modules: make s3rver).
// Its data lives in DATA_DIR; the buckets named are created before it serves. Once it listens it
// prints "listening on 127.0.0.1:PORT" (what tests/helpers/proc.c's listener_start waits for).
// SIGTERM stops it.
'use strict';
const path = require('path');

const [modules, dir, ...buckets] = process.argv.slice(2);
if (!modules || !dir) {
  process.stderr.write('usage: node s3rver.js NODE_MODULES DATA_DIR [BUCKET...]\n');
  process.exit(2);
}
const S3rver = require(path.resolve(modules, 's3rver'));
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory: dir,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name })),
});
server.run().then(
  ({ address, port }) => process.stdout.write(`listening on ${address}:${port}\n`),
  (err) => {
    process.stderr.write(`s3rver: ${err.message}\n`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => server.close().then(() => process.exit(0), () => process.exit(0)));
