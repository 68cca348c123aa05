// The tus-js-client side of benches/tus.sh: one upload of one file, timed.
//
//   node tus-upload.mjs --endpoint http://HOST:PORT/files/ --file FILE [--chunk-size BYTES]
//
// Creates the upload (POST, metadata `filename`) and sends the file as
// tus-js-client does by default in Node: the file opened as an fs.ReadStream,
// so every PATCH body streams from the file; without --chunk-size, the whole
// file in one PATCH (chunkSize is Infinity by default). No retries: a failed
// request fails the run (exit 1) instead of hiding in the figure.
//
// Prints one JSON line on stdout:
//   {"url": "...", "bytes": N, "seconds": S, "patches": P}
// seconds run from upload.start() (creation included) to onSuccess, i.e. the
// server's answer to the last PATCH; Node's own start-up is not in them.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Upload } from 'tus-js-client';

const { values } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    file: { type: 'string' },
    'chunk-size': { type: 'string' },
  },
});
if (!values.endpoint || !values.file) {
  console.error('tus-upload.mjs: --endpoint URL and --file FILE are required');
  process.exit(2);
}

const size = fs.statSync(values.file).size;
const options = {
  endpoint: values.endpoint,
  uploadSize: size,
  metadata: { filename: path.basename(values.file) },
  retryDelays: [],
};
if (values['chunk-size']) {
  options.chunkSize = Number(values['chunk-size']);
}

let patches = 0;
const started = process.hrtime.bigint();
const upload = new Upload(fs.createReadStream(values.file), {
  ...options,
  onBeforeRequest(req) {
    if (req.getMethod() === 'PATCH') patches += 1;
  },
  onSuccess() {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(JSON.stringify({ url: upload.url, bytes: size, seconds, patches }));
  },
  onError(err) {
    console.error(`tus-upload.mjs: ${err.message ?? err}`);
    process.exit(1);
  },
});
upload.start();
