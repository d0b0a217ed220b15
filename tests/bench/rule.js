// AWS.CloudTrail.AMIModifiedForPublicAccess for the Node.js peers, ported from trailhook's C
// (src/rule.c, DESIGN.md section 1). The new-account branch is left out: with an empty
// new-account set it never matches, and the peers keep no state.
'use strict';

const RULE_ID = 'AWS.CloudTrail.AMIModifiedForPublicAccess';

// Panther's lookup: the exact key, else the first key equal ignoring case; null is absent.
function get(obj, key) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return undefined;
  let v = obj[key];
  if (v === undefined) {
    const lower = key.toLowerCase();
    for (const k of Object.keys(obj)) {
      if (k.toLowerCase() === lower) {
        v = obj[k];
        break;
      }
    }
  }
  return v === null ? undefined : v;
}

// Python's truthiness, which the rule's `if event.get("errorCode")` relies on: {} and [] are
// false there, true in JavaScript.
function truthy(v) {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function matches(rec) {
  if (truthy(get(rec, 'errorCode')) || truthy(get(rec, 'errorMessage'))) return false;
  if (get(rec, 'eventName') !== 'ModifyImageAttribute') return false;
  const items = get(get(get(get(rec, 'requestParameters'), 'launchPermission'), 'add'), 'items');
  if (!Array.isArray(items)) return false; // missing, or a shape trailhook calls a rule error
  for (const item of items) {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return false;
    if (get(item, 'group') === 'all') return true;
  }
  return false;
}

// The dedup key of trailhook's default `dedup: image`: rule, account, region, image.
function dedupKey(rec) {
  const str = (v) => (typeof v === 'string' ? v : '');
  return [RULE_ID, str(get(rec, 'recipientAccountId')), str(get(rec, 'awsRegion')),
    str(get(get(rec, 'requestParameters'), 'imageId'))].join(':');
}

// The records of one document: an EventBridge envelope's detail, a log file's Records, the
// items of an array, or the document itself.
function recordsOf(doc) {
  if (Array.isArray(doc)) return doc.flatMap(recordsOf);
  if (doc !== null && typeof doc === 'object') {
    if (Array.isArray(doc.Records)) return doc.Records;
    if (doc['detail-type'] !== undefined && doc.detail !== null && typeof doc.detail === 'object') {
      return [doc.detail];
    }
  }
  return [doc];
}

module.exports = { RULE_ID, matches, dedupKey, recordsOf, get };
