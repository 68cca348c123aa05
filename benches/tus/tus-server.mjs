// The reference server of benches/tus.sh: @tus/server with @tus/file-store, as
// its README sets it up, at /files/ on a given address and directory.
//
//   node tus-server.mjs --port 0 --dir DIR [--host 127.0.0.1]
//
// Prints `listening on http://HOST:PORT` on stdout once bound (the line the
// benchmark waits for, as with `upcache serve`) and exits on SIGTERM or SIGINT.
//
// What @tus/file-store does with the bytes (see its dist/index.js): each
// PATCH body is piped into fs.createWriteStream(DIR/ID, { flags: 'r+', start:
// offset }); the upload's info goes to DIR/ID.json (@tus/utils FileKvStore).
// Nothing is fsynced and nothing is hashed: a 204 means "in the page cache".

import { parseArgs } from 'node:util';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    dir: { type: 'string' },
  },
});
if (!values.dir) {
  console.error('tus-server.mjs: --dir DIR is required');
  process.exit(2);
}

const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory: values.dir }),
});

const http = tus.listen({ port: Number(values.port), host: values.host }, () => {
  const { address, port } = http.address();
  console.log(`listening on http://${address}:${port}`);
});
http.on('error', (err) => {
  console.error(`tus-server.mjs: ${err.message}`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    http.close(() => process.exit(0));
    http.closeAllConnections();
  });
}
