// Drives tus-js-client (the Node build, as an application would use it) against a
// tus endpoint, for tests/tests/tus_clients.rs.
//
//   node tus-js.mjs '<config JSON>'
//
// Config:
//   endpoint         the creation URL, e.g. http://127.0.0.1:PORT/files/
//   file             the file to upload
//   operation        the operation (an object): sent as Upload-Metadata `operation`
//   filename, filetype   the other metadata
//   mode             "upload" (one Upload to the end) or "resume" (see below)
//   chunkSize        optional, bytes per PATCH
//   parallelUploads  optional (concatenation extension)
//   keepAlive        optional, default true (Node's global agent); false opens a
//                    connection per request, so a proxy can count requests by connection
//   source           optional: "file" (default: an fs.ReadStream), "buffer" (the file
//                    read into a Buffer) or "stream" (a plain Readable of unknown size)
//   clientOptions    optional, more tus-js-client options as they are (e.g.
//                    uploadDataDuringCreation, uploadLengthDeferred, overridePatchMethod)
//   resume mode only:
//     storage        the FileUrlStorage file (where tus-js-client keeps upload URLs)
//     interrupt      "abort": upload.abort() once `abortAfter` bytes are accepted;
//                    "error": no retries, the first failure ends phase 1 (a proxy
//                    between client and server cuts a connection)
//     abortAfter     bytes (for "abort")
//
// Resume mode: phase 1 uploads until interrupted. Phase 2 is a new Upload of a new
// stream of the same file that finds phase 1's upload with findPreviousUploads()
// and resumes it with resumeFromPreviousUpload(); before it starts, the script asks
// the server for the upload's offset with its own HEAD. Phase 2 retries (after 0,
// 200 and 500 ms) as tus-js-client does by default: a HEAD, then PATCHes from the
// offset the server gives.
//
// Prints one JSON line on stdout and exits 0 when the upload succeeded; on any
// failure prints {"error": ...} and exits 1. Every request tus-js-client sends is
// recorded (method, URL, Upload-Offset, Upload-Length, Upload-Concat,
// X-HTTP-Method-Override, status, answered Upload-Offset).

import * as fs from 'node:fs';
import * as http from 'node:http';
import { PassThrough } from 'node:stream';
import * as tus from 'tus-js-client';

const config = JSON.parse(process.argv[2] ?? '{}');
const TIMEOUT_MS = 50_000;

function fail(error) {
  process.stdout.write(`${JSON.stringify({ error: String(error?.stack ?? error) })}\n`);
  process.exit(1);
}

setTimeout(() => fail(`tus-js.mjs: no outcome after ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

function options(log, extra = {}) {
  const opts = {
    endpoint: config.endpoint,
    metadata: {
      operation: JSON.stringify(config.operation),
      filename: config.filename ?? 'x.bin',
      filetype: config.filetype ?? 'application/octet-stream',
    },
    onBeforeRequest(req) {
      log.push({
        method: req.getMethod(),
        url: req.getURL(),
        offset: numberOrNull(req.getHeader('Upload-Offset')),
        length: numberOrNull(req.getHeader('Upload-Length')),
        concat: req.getHeader('Upload-Concat') ?? null,
        override: req.getHeader('X-HTTP-Method-Override') ?? null,
        status: null,
      });
    },
    onAfterResponse(req, res) {
      // Requests of parallel parts interleave: match by method and URL, latest first.
      for (let i = log.length - 1; i >= 0; i--) {
        const entry = log[i];
        if (entry.status === null && entry.method === req.getMethod() && entry.url === req.getURL()) {
          entry.status = res.getStatus();
          entry.responseOffset = numberOrNull(res.getHeader('Upload-Offset'));
          break;
        }
      }
    },
    ...config.clientOptions,
    ...extra,
  };
  if (config.chunkSize) opts.chunkSize = config.chunkSize;
  if (config.parallelUploads) opts.parallelUploads = config.parallelUploads;
  if (config.keepAlive === false) {
    opts.httpStack = new tus.DefaultHttpStack({ agent: new http.Agent({ keepAlive: false }) });
  }
  return opts;
}

// The input, as the configured kind of source.
function source() {
  switch (config.source ?? 'file') {
    case 'file':
      return fs.createReadStream(config.file);
    case 'buffer':
      return fs.readFileSync(config.file);
    case 'stream':
      return fs.createReadStream(config.file).pipe(new PassThrough());
    default:
      throw new Error(`unknown source ${config.source}`);
  }
}

function numberOrNull(v) {
  if (v === undefined || v === null) return null;
  const n = Number(v);
  return Number.isNaN(n) ? String(v) : n;
}

// Runs `upload` to its end: resolves with how it ended.
function run(upload, opts, { abortAfter } = {}) {
  return new Promise((resolve) => {
    const progress = [];
    const accepted = [];
    upload.options.onProgress = (sent, total) => progress.push(sent);
    upload.options.onChunkComplete = (size, bytesAccepted) => {
      accepted.push(bytesAccepted);
      if (abortAfter !== undefined && bytesAccepted >= abortAfter) {
        // From inside the callback: tus-js-client then sends no further PATCH.
        upload.abort().then(() => resolve({ outcome: 'aborted', progress, accepted }));
      }
    };
    upload.options.onSuccess = () => resolve({ outcome: 'success', progress, accepted });
    upload.options.onError = (err) =>
      resolve({ outcome: 'error', error: String(err?.message ?? err), progress, accepted });
    upload.start();
  });
}

async function headOffset(url) {
  const res = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  return {
    status: res.status,
    offset: numberOrNull(res.headers.get('upload-offset')),
    length: numberOrNull(res.headers.get('upload-length')),
  };
}

async function uploadMode() {
  const requests = [];
  const opts = options(requests, { retryDelays: null });
  const upload = new tus.Upload(source(), opts);
  const end = await run(upload, opts);
  if (end.outcome !== 'success') {
    fail(`upload ended with ${end.outcome}: ${end.error}\nrequests: ${JSON.stringify(requests)}`);
  }
  return { uploadUrl: upload.url, requests, progress: end.progress, accepted: end.accepted };
}

async function resumeMode() {
  const storage = new tus.FileUrlStorage(config.storage);
  // Phase 1: until interrupted.
  const requests1 = [];
  const opts1 = options(requests1, { urlStorage: storage, retryDelays: null });
  const first = new tus.Upload(source(), opts1);
  const end1 = await run(first, opts1, {
    abortAfter: config.interrupt === 'abort' ? config.abortAfter : undefined,
  });
  const expected = config.interrupt === 'abort' ? 'aborted' : 'error';
  if (end1.outcome !== expected) {
    fail(`phase 1 ended with ${end1.outcome} (${end1.error}), expected ${expected}\nrequests: ${JSON.stringify(requests1)}`);
  }

  // Phase 2: a new Upload finds the first one by its fingerprint and resumes it.
  const requests2 = [];
  // The server may still be taking in the request cut in phase 1 when phase 2
  // starts: retry (on `409`, from the server's offset), as tus-js-client does by default.
  const opts2 = options(requests2, { urlStorage: storage, retryDelays: [0, 200, 500] });
  const second = new tus.Upload(source(), opts2);
  const previous = await second.findPreviousUploads();
  if (previous.length !== 1) {
    fail(`findPreviousUploads() found ${previous.length} uploads, expected 1: ${JSON.stringify(previous)}`);
  }
  const head = await headOffset(previous[0].uploadUrl);
  second.resumeFromPreviousUpload(previous[0]);
  const end2 = await run(second, opts2);
  if (end2.outcome !== 'success') {
    fail(`phase 2 ended with ${end2.outcome}: ${end2.error}\nrequests: ${JSON.stringify(requests2)}`);
  }
  return {
    uploadUrl: second.url,
    firstUploadUrl: first.url,
    previousUploadUrl: previous[0].uploadUrl,
    phase1: { outcome: end1.outcome, error: end1.error ?? null, requests: requests1, accepted: end1.accepted },
    head,
    phase2: { requests: requests2, progress: end2.progress, accepted: end2.accepted },
  };
}

try {
  const out = config.mode === 'resume' ? await resumeMode() : await uploadMode();
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
} catch (err) {
  fail(err);
}
