'use strict';
// A stand-in istiod for conformance tests, built on an independent gRPC stack
// (@grpc/grpc-js + protobufjs), serving over TLS:
//   - envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources
//     (delta xDS: Address and Authorization resources from a JSON state file,
//     pushed again whenever that file changes);
//   - istio.v1.auth.IstioCertificateService/CreateCertificate
//     (signs the CSR with an Istio "cacerts" directory through the openssl CLI).
// Every request it receives, every response it sends and every certificate it
// signs is appended to a JSON-lines event log that the shell tests read.
//
// Usage:
//   node fake_istiod.js --listen 127.0.0.1:PORT --tls-cert F --tls-key F \
//     --config state.json --ca-dir DIR --log events.jsonl [--token TOKEN]
// PORT 0 picks a free port. Prints "listening HOST:PORT" on stdout when ready.
// Signals: SIGUSR2 ends every open ADS stream with UNAVAILABLE (to test
// reconnects); SIGTERM/SIGINT stop the server.
// README.md next to this file documents the state file and the event log.

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFile } = require('child_process');
const lib = require('./lib');

const { grpc, protobuf, TYPE_ADDRESS, TYPE_AUTHZ } = lib;

const USAGE =
  'usage: node fake_istiod.js --listen HOST:PORT --tls-cert FILE --tls-key FILE ' +
  '--config state.json --ca-dir DIR --log events.jsonl [--token TOKEN]';

function die(msg) {
  process.stderr.write(`fake_istiod: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const known = ['listen', 'tls-cert', 'tls-key', 'config', 'ca-dir', 'log', 'token'];
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || !known.includes(a.slice(2)) || i + 1 >= argv.length) {
      die(`bad argument "${a}"\n${USAGE}`);
    }
    out[a.slice(2)] = argv[++i];
  }
  for (const k of known) {
    if (k !== 'token' && out[k] === undefined) die(`missing --${k}\n${USAGE}`);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const root = lib.loadRoot();
const T_ADDRESS = root.lookupType('istio.workload.Address');
const T_AUTHZ = root.lookupType('istio.security.Authorization');

// ---------------------------------------------------------------- event log

const logFd = fs.openSync(args.log, 'a');

// Synchronous append so a test polling the file sees the line as soon as the
// handler that produced it has run.
function logEvent(ev) {
  fs.writeSync(logFd, JSON.stringify({ ts: Date.now(), ...ev }) + '\n');
}

// ---------------------------------------------------------------- state file

function ipBytes(ip, where) {
  if (typeof ip !== 'string') throw new Error(`${where}: IP must be a string`);
  const v4 = ip.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (v4) {
    const b = v4.slice(1).map(Number);
    if (b.some((x) => x > 255)) throw new Error(`${where}: bad IPv4 "${ip}"`);
    return Buffer.from(b);
  }
  if (!ip.includes(':')) throw new Error(`${where}: bad IP "${ip}"`);
  // IPv6: expand "::", allow a trailing dotted quad.
  let s = ip;
  const tail = s.match(/:(\d+\.\d+\.\d+\.\d+)$/);
  if (tail) {
    const q = ipBytes(tail[1], where);
    s = s.slice(0, -tail[1].length) + q.readUInt16BE(0).toString(16) + ':' + q.readUInt16BE(2).toString(16);
  }
  const halves = s.split('::');
  if (halves.length > 2) throw new Error(`${where}: bad IPv6 "${ip}"`);
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...Array(Math.max(fill, 0)).fill('0'), ...rest];
  if (groups.length !== 8 || fill < 0 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) {
    throw new Error(`${where}: bad IPv6 "${ip}"`);
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function isBytesField(f, repeated) {
  return f !== undefined && f.type === 'bytes' && f.repeated === repeated;
}

// Turns one JSON object of the state file into an object protobufjs's
// fromObject takes, checking every key against the message type (fromObject
// alone drops unknown keys and unknown enum names silently, which would hide
// typos in tests). Helpers: "ips" (Workload.addresses), "ip" (any message
// with a bytes `address` field) and "cidr" (istio.security.Address).
function buildMessage(obj, type, where) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new Error(`${where}: expected an object (${type.fullName})`);
  }
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'ips' && isBytesField(type.fields.addresses, true)) {
      if (!Array.isArray(v)) throw new Error(`${where}.ips: expected a list`);
      out.addresses = v.map((ip, i) => ipBytes(ip, `${where}.ips[${i}]`));
    } else if (k === 'ip' && isBytesField(type.fields.address, false)) {
      out.address = ipBytes(v, `${where}.ip`);
    } else if (k === 'cidr' && isBytesField(type.fields.address, false) && type.fields.length) {
      const [ip, len] = String(v).split('/');
      out.address = ipBytes(ip, `${where}.cidr`);
      out.length = len === undefined ? out.address.length * 8 : Number(len);
    } else if (type.fields[k]) {
      out[k] = buildField(v, type.fields[k], `${where}.${k}`);
    } else {
      throw new Error(`${where}: ${type.fullName} has no field "${k}" (use camelCase names)`);
    }
  }
  return out;
}

function buildField(v, f, where) {
  if (f.map) {
    if (v === null || typeof v !== 'object') throw new Error(`${where}: expected a map object`);
    const out = {};
    for (const [mk, mv] of Object.entries(v)) out[mk] = buildOne(mv, f, `${where}[${mk}]`);
    return out;
  }
  if (f.repeated) {
    if (!Array.isArray(v)) throw new Error(`${where}: expected a list`);
    return v.map((x, i) => buildOne(x, f, `${where}[${i}]`));
  }
  return buildOne(v, f, where);
}

function buildOne(v, f, where) {
  const t = f.resolvedType;
  if (t instanceof protobuf.Type) return buildMessage(v, t, where);
  if (t instanceof protobuf.Enum) {
    // Numbers pass through unchecked so tests can send unknown enum values.
    if (typeof v === 'number') return v;
    if (typeof v !== 'string' || !(v in t.values)) {
      throw new Error(`${where}: "${v}" is not a value of ${t.fullName}`);
    }
    return v;
  }
  if (f.type === 'bytes') {
    if (typeof v !== 'string') throw new Error(`${where}: bytes must be base64 text`);
    return Buffer.from(v, 'base64');
  }
  return v;
}

function encode(type, obj) {
  const msg = type.fromObject(obj);
  return Buffer.from(type.encode(msg).finish());
}

function versionOf(typeUrl, bytes) {
  return crypto.createHash('sha256').update(typeUrl).update(bytes).digest('hex').slice(0, 16);
}

const RAW_TYPES = { address: TYPE_ADDRESS, authorization: TYPE_AUTHZ };

// Reads and validates the state file. Returns
//   { byType: Map<type_url, Map<name, {version, bytes, ips}>>, ca: {...} }
// or throws with a message naming the offending entry.
function loadState(file) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const known = ['workloads', 'services', 'policies', 'raw', 'ca'];
  for (const k of Object.keys(j)) {
    if (!known.includes(k)) throw new Error(`state: unknown top-level key "${k}"`);
  }
  const byType = new Map([
    [TYPE_ADDRESS, new Map()],
    [TYPE_AUTHZ, new Map()],
  ]);
  const put = (typeUrl, name, bytes, extra, where) => {
    if (typeof name !== 'string' || name === '') throw new Error(`${where}: empty resource name`);
    const m = byType.get(typeUrl);
    if (m.has(name)) throw new Error(`${where}: duplicate resource name "${name}"`);
    m.set(name, { version: versionOf(typeUrl, bytes), bytes, ...extra });
  };
  (j.workloads || []).forEach((w, i) => {
    const where = `workloads[${i}]`;
    const obj = buildMessage(w, T_ADDRESS.fields.workload.resolvedType, where);
    const ips = (obj.addresses || []).map((b) => `${w.network || ''}/${bytesToIp(b)}`);
    put(TYPE_ADDRESS, w.uid, encode(T_ADDRESS, { workload: obj }), { ips }, where);
  });
  (j.services || []).forEach((s, i) => {
    const where = `services[${i}]`;
    const obj = buildMessage(s, T_ADDRESS.fields.service.resolvedType, where);
    put(TYPE_ADDRESS, `${s.namespace || ''}/${s.hostname || ''}`, encode(T_ADDRESS, { service: obj }), {}, where);
  });
  (j.policies || []).forEach((p, i) => {
    const where = `policies[${i}]`;
    const obj = buildMessage(p, T_AUTHZ, where);
    put(TYPE_AUTHZ, `${p.namespace || ''}/${p.name || ''}`, encode(T_AUTHZ, obj), {}, where);
  });
  (j.raw || []).forEach((r, i) => {
    const where = `raw[${i}]`;
    const typeUrl = RAW_TYPES[r.type];
    if (!typeUrl) throw new Error(`${where}: type must be "address" or "authorization"`);
    if (typeof r.hex !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(r.hex)) {
      throw new Error(`${where}: hex must be an even-length hex string`);
    }
    put(typeUrl, r.name, Buffer.from(r.hex, 'hex'), {}, where);
  });
  return { byType, ca: j.ca || {} };
}

function bytesToIp(b) {
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length === 16) {
    const g = [];
    for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i).toString(16));
    return g.join(':');
  }
  return b.toString('hex');
}

let state;
try {
  state = loadState(args.config);
} catch (e) {
  die(`cannot load ${args.config}: ${e.message}`);
}
let stateGen = 1;

// ---------------------------------------------------------------- metadata

function metadataObject(md) {
  const map = md.getMap();
  const out = { authorization: null, clusterid: null };
  for (const [k, v] of Object.entries(map)) {
    out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v;
  }
  return out;
}

function authOk(mdObj) {
  return args.token === undefined || mdObj.authorization === `Bearer ${args.token}`;
}

function structStrings(s) {
  if (!s || !s.fields) return null;
  const out = {};
  for (const [k, v] of Object.entries(s.fields)) {
    out[k] = v && v.kind ? v[v.kind] : null;
  }
  return out;
}

// ---------------------------------------------------------------- ADS

const streams = new Set();
let streamSeq = 0;

function sendDelta(st, typeUrl, names, removed, reason) {
  const cur = state.byType.get(typeUrl) || new Map();
  const sent = st.sent.get(typeUrl);
  const resources = [];
  const logged = {};
  for (const n of names) {
    const r = cur.get(n);
    if (!r) continue;
    resources.push({ name: n, version: r.version, resource: { typeUrl, value: r.bytes } });
    sent.set(n, r.version);
    logged[n] = r.version;
  }
  for (const n of removed) sent.delete(n);
  const nonce = crypto.randomBytes(8).toString('hex');
  st.call.write({
    systemVersionInfo: String(stateGen),
    typeUrl,
    nonce,
    resources,
    removedResources: removed,
  });
  logEvent({
    event: 'response',
    stream: st.id,
    reason,
    type_url: typeUrl,
    nonce,
    resources: logged,
    removed_resources: removed,
  });
}

// Resolves on-demand names: a resource name, or "<network>/<ip>" of a workload.
function resolveNames(typeUrl, names) {
  const cur = state.byType.get(typeUrl) || new Map();
  const out = new Set();
  for (const n of names) {
    if (cur.has(n)) {
      out.add(n);
      continue;
    }
    for (const [name, r] of cur) if (r.ips && r.ips.includes(n)) out.add(name);
  }
  return [...out];
}

function onRequest(st, req) {
  const typeUrl = req.typeUrl || '';
  const irv = req.initialResourceVersions || {};
  const subscribe = req.resourceNamesSubscribe || [];
  const unsubscribe = req.resourceNamesUnsubscribe || [];
  logEvent({
    event: 'request',
    stream: st.id,
    type_url: typeUrl,
    response_nonce: req.responseNonce || '',
    error_detail: req.errorDetail
      ? { code: req.errorDetail.code || 0, message: req.errorDetail.message || '' }
      : null,
    node_id: req.node ? req.node.id || '' : null,
    has_node: Boolean(req.node),
    node_metadata: req.node ? structStrings(req.node.metadata) : null,
    resource_names_subscribe: subscribe,
    resource_names_unsubscribe: unsubscribe,
    initial_resource_versions: irv,
    metadata: st.metadata,
  });
  if (st.closed) return;
  const cur = state.byType.get(typeUrl) || new Map();
  if (!st.sent.has(typeUrl)) {
    // First request of this type on the stream: everything we have (a
    // wildcard subscription), plus removals for names the client says it
    // holds from an earlier stream that no longer exist.
    st.sent.set(typeUrl, new Map());
    if (subscribe.includes('*') && unsubscribe.includes('*')) {
      // istiod's on-demand signal: send nothing until names are asked for.
      st.onDemand.set(typeUrl, new Set());
      const removed = Object.keys(irv).filter((n) => !cur.has(n));
      if (removed.length) sendDelta(st, typeUrl, [], removed, 'initial');
      return;
    }
    const removed = Object.keys(irv).filter((n) => !cur.has(n));
    sendDelta(st, typeUrl, [...cur.keys()], removed, 'initial');
    return;
  }
  const asked = subscribe.filter((n) => n !== '*');
  if (asked.length) {
    const names = resolveNames(typeUrl, asked);
    const want = st.onDemand.get(typeUrl);
    if (want) names.forEach((n) => want.add(n));
    sendDelta(st, typeUrl, names, [], 'on_demand');
  }
  // Otherwise an ACK or NACK: logged above, nothing to answer.
}

function pushAll() {
  for (const st of streams) {
    if (st.closed) continue;
    for (const [typeUrl, sent] of st.sent) {
      const cur = state.byType.get(typeUrl) || new Map();
      const want = st.onDemand.get(typeUrl);
      const changed = [];
      for (const [n, r] of cur) {
        if (want && !want.has(n)) continue;
        if (sent.get(n) !== r.version) changed.push(n);
      }
      const removed = [...sent.keys()].filter((n) => !cur.has(n));
      if (changed.length || removed.length) sendDelta(st, typeUrl, changed, removed, 'push');
    }
  }
}

function onAds(call) {
  const st = {
    id: ++streamSeq,
    call,
    metadata: metadataObject(call.metadata),
    sent: new Map(),
    onDemand: new Map(),
    closed: false,
  };
  logEvent({ event: 'stream_open', stream: st.id, peer: call.getPeer(), metadata: st.metadata });
  if (!authOk(st.metadata)) {
    logEvent({ event: 'unauthenticated', stream: st.id, method: 'DeltaAggregatedResources', metadata: st.metadata });
    call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'fake istiod: bad or missing bearer token' });
    return;
  }
  streams.add(st);
  const finish = (how, detail) => {
    if (st.closed) return;
    st.closed = true;
    streams.delete(st);
    logEvent({ event: 'stream_end', stream: st.id, how, detail: detail || null });
  };
  call.on('data', (req) => onRequest(st, req));
  call.on('end', () => {
    finish('client_end');
    call.end();
  });
  call.on('cancelled', () => finish('cancelled'));
  call.on('error', (e) => finish('error', e && e.message));
  st.reset = () => {
    finish('server_reset');
    call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'fake istiod: stream reset' });
  };
}

// ---------------------------------------------------------------- CA

function run(cmd, argv, opts) {
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: 15000, ...opts }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${cmd} ${argv[0]}: ${String(stderr).trim() || err.message}`;
        reject(err);
      } else {
        resolve(String(stdout));
      }
    });
  });
}

// openssl's "YYYYMMDDHHMMSSZ" form of a Date.
function asn1Time(d) {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

const CA_CONF = (san) => `[ca]
default_ca = fake
[fake]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = anything
unique_subject = no
email_in_dn = no
copy_extensions = none
[anything]
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
authorityKeyIdentifier = keyid
subjectAltName = critical, URI:${san}
`;

async function signCsr(csrPem, san, ttl, backdate) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-istiod-csr-'));
  try {
    fs.writeFileSync(path.join(dir, 'req.csr'), csrPem);
    fs.writeFileSync(path.join(dir, 'index.txt'), '');
    fs.writeFileSync(path.join(dir, 'serial'), crypto.randomBytes(16).toString('hex') + '\n');
    fs.writeFileSync(path.join(dir, 'ca.cnf'), CA_CONF(san));
    const now = Math.floor(Date.now() / 1000);
    const nb = new Date((now - backdate) * 1000);
    const na = new Date((now + ttl) * 1000);
    await run(
      'openssl',
      [
        'ca', '-batch', '-config', 'ca.cnf', '-extensions', 'leaf', '-notext', '-preserveDN',
        '-cert', path.resolve(args['ca-dir'], 'ca-cert.pem'),
        '-keyfile', path.resolve(args['ca-dir'], 'ca-key.pem'),
        '-startdate', asn1Time(nb), '-enddate', asn1Time(na),
        '-in', 'req.csr', '-out', 'leaf.pem',
      ],
      { cwd: dir },
    );
    return {
      leaf: fs.readFileSync(path.join(dir, 'leaf.pem'), 'utf8'),
      notBefore: nb.toISOString(),
      notAfter: na.toISOString(),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Facts about the CSR that the wire facts (section 4) pin down, from
// `openssl req -text`, so tests can check our client's CSR shape.
async function inspectCsr(csrPem) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-istiod-req-'));
  try {
    fs.writeFileSync(path.join(dir, 'req.csr'), csrPem);
    const text = await run('openssl', ['req', '-in', 'req.csr', '-noout', '-text', '-verify'], { cwd: dir });
    const subj = text.match(/^\s*Subject:(.*)$/m);
    const sanHdr = text.match(/X509v3 Subject Alternative Name:(.*)\n\s*(.*)/);
    const uris = sanHdr ? [...sanHdr[2].matchAll(/URI:([^,\s]+)/g)].map((m) => m[1]) : [];
    const curve = text.match(/NIST CURVE: (\S+)/) || text.match(/ASN1 OID: (\S+)/);
    const sig = text.match(/Signature Algorithm: (\S+)/);
    return {
      uris,
      subject_empty: !subj || subj[1].trim() === '',
      san_critical: Boolean(sanHdr && /critical/.test(sanHdr[1])),
      san_entries: sanHdr ? sanHdr[2].trim() : null,
      key: curve ? curve[1] : null,
      signature: sig ? sig[1] : null,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// CreateCertificate calls held while the state says "ca": {"hold": true},
// answered (as the state then says) once a state without it is loaded.
let heldCsrs = [];

async function onCreateCertificate(call, callback) {
  if (state.ca.hold) {
    heldCsrs.push(() => onCreateCertificate(call, callback));
    logEvent({ event: 'csr_held', held: heldCsrs.length });
    return;
  }
  const md = metadataObject(call.metadata);
  if (!authOk(md)) {
    logEvent({ event: 'unauthenticated', method: 'CreateCertificate', metadata: md });
    callback({ code: grpc.status.UNAUTHENTICATED, details: 'fake istiod: bad or missing bearer token' });
    return;
  }
  const req = call.request;
  const ttlAsked = Number(req.validityDuration || 0);
  const ttl = ttlAsked > 0 ? Math.min(ttlAsked, 10 * 365 * 86400) : 86400;
  const meta = structStrings(req.metadata);
  const impersonated = meta && typeof meta.ImpersonatedIdentity === 'string' ? meta.ImpersonatedIdentity : null;
  const ca = state.ca;
  const ev = { event: 'csr', identity: null, impersonated, ttl: ttlAsked, request_metadata: meta, metadata: md };
  try {
    const facts = await inspectCsr(req.csr || '');
    Object.assign(ev, { csr: facts });
    ev.identity = facts.uris.length === 1 ? facts.uris[0] : null;
    if (ca.fail) {
      ev.result = 'injected_failure';
      logEvent(ev);
      callback({ code: ca.fail.code || grpc.status.INTERNAL, details: ca.fail.message || 'fake istiod: injected failure' });
      return;
    }
    if (ev.identity === null) {
      ev.result = 'rejected';
      logEvent(ev);
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `CSR must carry exactly one URI SAN, found ${facts.uris.length}` });
      return;
    }
    const san = ca.san || ev.identity;
    const signed = await signCsr(req.csr, san, ttl, Number(ca.backdate || 0));
    const caCert = fs.readFileSync(path.join(args['ca-dir'], 'ca-cert.pem'), 'utf8');
    const rootCert = fs.readFileSync(path.join(args['ca-dir'], 'root-cert.pem'), 'utf8');
    const chain = ca.omit_root ? [signed.leaf] : [signed.leaf, caCert, rootCert];
    Object.assign(ev, { result: 'signed', san, not_before: signed.notBefore, not_after: signed.notAfter, chain_len: chain.length });
    logEvent(ev);
    callback(null, { certChain: chain });
  } catch (e) {
    ev.result = 'error';
    ev.error = e.message;
    logEvent(ev);
    callback({ code: grpc.status.INVALID_ARGUMENT, details: `fake istiod: ${e.message}` });
  }
}

// ---------------------------------------------------------------- main

function main() {
  const services = lib.loadGrpc();
  const server = new grpc.Server();
  server.addService(services.ads.service, { DeltaAggregatedResources: onAds });
  server.addService(services.ca.service, { CreateCertificate: onCreateCertificate });
  const creds = grpc.ServerCredentials.createSsl(
    null,
    [{ private_key: fs.readFileSync(args['tls-key']), cert_chain: fs.readFileSync(args['tls-cert']) }],
    false,
  );
  server.bindAsync(args.listen, creds, (err, port) => {
    if (err) die(`cannot listen on ${args.listen}: ${err.message}`);
    const host = args.listen.replace(/:\d+$/, '');
    logEvent({ event: 'listening', address: `${host}:${port}` });
    process.stdout.write(`listening ${host}:${port}\n`);
  });

  // Polling, not inotify: shell tests replace the file with `mv`, which
  // fs.watch on the old inode would miss.
  fs.watchFile(args.config, { interval: 100 }, (cur, prev) => {
    if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return;
    try {
      state = loadState(args.config);
    } catch (e) {
      logEvent({ event: 'state_error', message: e.message });
      return;
    }
    stateGen++;
    const counts = {};
    for (const [t, m] of state.byType) counts[t] = m.size;
    logEvent({ event: 'state_loaded', generation: stateGen, resources: counts });
    pushAll();
    if (!state.ca.hold && heldCsrs.length) {
      const held = heldCsrs;
      heldCsrs = [];
      logEvent({ event: 'csr_released', count: held.length });
      held.forEach((answer) => answer());
    }
  });

  process.on('SIGUSR2', () => {
    logEvent({ event: 'reset_streams', count: streams.size });
    for (const st of [...streams]) st.reset();
  });
  const stop = () => {
    fs.unwatchFile(args.config);
    server.forceShutdown();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
