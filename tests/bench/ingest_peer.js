// Node.js peer of trailhook's POST /events for the ingest benchmark: reads the body,
// JSON.parse, applies the rule to each record and answers 202 with a small JSON document.
// It stores nothing, so it is an upper bound for "the same work in Node", not a rival service.
//   node ingest_peer.js PORT
'use strict';

const http = require('http');
const rule = require('./rule.js');

function answer(res, status, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function handleEvents(body, res) {
  let doc;
  try {
    doc = JSON.parse(body);
  } catch (e) {
    answer(res, 400, { error: 'malformed JSON: ' + e.message });
    return;
  }
  const records = rule.recordsOf(doc);
  let matched = 0;
  for (const rec of records) {
    if (rule.matches(rec)) matched++;
  }
  answer(res, 202, { accepted: records.length, matched });
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    answer(res, 200, { status: 'ok' });
    return;
  }
  if (req.method !== 'POST') {
    answer(res, 405, { error: 'method not allowed' });
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => handleEvents(Buffer.concat(chunks).toString('utf8'), res));
});
server.keepAliveTimeout = 30000;
server.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
