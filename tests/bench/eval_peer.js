// Node.js peer of `trailhook eval FILE` for the eval benchmark: reads a CloudTrail log file
// (gunzip for .gz), JSON.parse, applies the rule to each record and prints one JSON line per
// record in trailhook's shape:
//   {"index":i,"eventID":…,"match":true|false,"rule":…|null,"dedup":…|null[,"severity":…]}
//   node eval_peer.js FILE
'use strict';

const fs = require('fs');
const zlib = require('zlib');
const rule = require('./rule.js');

const SEVERITY = 'Medium'; // the rule spec's Severity
const FLUSH_BYTES = 1 << 20;

function readJson(path) {
  let data = fs.readFileSync(path);
  if (path.endsWith('.gz')) data = zlib.gunzipSync(data);
  return JSON.parse(data.toString('utf8'));
}

function line(index, rec, hit) {
  const id = rule.get(rec, 'eventID');
  const eventID = id === undefined ? null : id;
  const out = { index, eventID, match: false, rule: null, dedup: null };
  if (hit) {
    out.match = true;
    out.rule = rule.RULE_ID;
    out.dedup = rule.dedupKey(rec);
    out.severity = SEVERITY;
  }
  return JSON.stringify(out) + '\n';
}

function main(path) {
  const records = rule.recordsOf(readJson(path));
  let pending = '';
  let matched = 0;
  records.forEach((rec, i) => {
    const hit = rule.matches(rec);
    if (hit) matched++;
    pending += line(i, rec, hit);
    if (pending.length >= FLUSH_BYTES) {
      fs.writeSync(1, pending);
      pending = '';
    }
  });
  if (pending) fs.writeSync(1, pending);
  return matched > 0 ? 1 : 0; // trailhook's exit status: 1 when something matched
}

process.exitCode = main(process.argv[2]);
