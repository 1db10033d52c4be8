'use strict';
// A command-line gRPC client on an independent stack (@grpc/grpc-js +
// protobufjs) for the two RPCs a ztunnel makes to its control plane, so e2e
// shell tests can show that a gRPC implementation that is not ours works as a
// client of `ztunnel control` (and, for its own self-test, of fake_istiod.js):
//
//   ads: DeltaAggregatedResources, wildcard Address + Authorization, every
//        response decoded, checked, ACKed or NACKed, logged as JSON lines;
//   csr: CreateCertificate with a fresh P-256 key and CSR (openssl CLI), the
//        returned chain verified with node:crypto.
//
// README.md next to this file (section "control_client.js") is the manual:
// flags, output lines, exit codes. control_selftest.sh tests it.

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const lib = require('./lib');

const { grpc, TYPE_ADDRESS, TYPE_AUTHZ } = lib;

const EXIT_OK = 0;
const EXIT_USAGE = 2;
const EXIT_STREAM_ENDED = 3;
const EXIT_GRPC_ERROR = 4;
const EXIT_NOT_VERIFIED = 5;

const USAGE = `usage:
  node control_client.js ads COMMON --out FILE [--initial-versions FILE.json]
      [--save-versions FILE.json] [--exit-after-ms N] [--nack NAME]...
  node control_client.js csr COMMON --identity spiffe://TD/ns/NS/sa/SA
      [--impersonate] [--ttl SECONDS] [--csr-file FILE] [--out FILE]
      [--key-out FILE] [--timeout-ms N]
COMMON: --target HOST:PORT (--root-ca FILE | --plaintext) [--servername NAME]
  [--token-file FILE] [--cluster-id ID] [--node-id ID] [--node-name NAME]
  [--pod-name NAME] [--pod-namespace NS] [--instance-ip IP] [--meta KEY=VALUE]...`;

// ------------------------------------------------------------------ arguments

const COMMON_FLAGS = [
  'target', 'root-ca', 'servername', 'token-file', 'cluster-id', 'node-id', 'node-name',
  'pod-name', 'pod-namespace', 'instance-ip',
];
const COMMON_BOOL = ['plaintext'];
const COMMON_MULTI = ['meta'];
const MODE_FLAGS = {
  ads: { value: ['out', 'initial-versions', 'save-versions', 'exit-after-ms'], bool: [], multi: ['nack'] },
  csr: { value: ['identity', 'ttl', 'csr-file', 'out', 'key-out', 'timeout-ms'], bool: ['impersonate'], multi: [] },
};

function usage(msg) {
  process.stderr.write(`control_client: ${msg}\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}

function parseArgs(argv) {
  const mode = argv[0];
  if (!MODE_FLAGS[mode]) usage(`first argument must be "ads" or "csr", got "${mode || ''}"`);
  const spec = MODE_FLAGS[mode];
  const value = [...COMMON_FLAGS, ...spec.value];
  const bool = [...COMMON_BOOL, ...spec.bool];
  const multi = [...COMMON_MULTI, ...spec.multi];
  const out = { mode };
  for (const k of multi) out[k] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const k = a.startsWith('--') ? a.slice(2) : null;
    if (k !== null && bool.includes(k)) {
      out[k] = true;
    } else if (k !== null && (value.includes(k) || multi.includes(k))) {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      if (multi.includes(k)) out[k].push(argv[++i]);
      else out[k] = argv[++i];
    } else {
      usage(`unknown argument "${a}" for ${mode}`);
    }
  }
  if (!out.target) usage('missing --target');
  if (!out['root-ca'] && !out.plaintext) usage('missing --root-ca (or --plaintext)');
  if (mode === 'ads' && !out.out) usage('missing --out');
  if (mode === 'csr' && !out.identity) usage('missing --identity');
  for (const k of ['exit-after-ms', 'ttl', 'timeout-ms']) {
    if (out[k] !== undefined && !/^\d+$/.test(out[k])) usage(`--${k} must be a non-negative integer`);
  }
  for (const m of out.meta) if (!/^[^=]+=/.test(m)) usage(`--meta wants KEY=VALUE, got "${m}"`);
  return out;
}

// ------------------------------------------------------------------ channel

function readFileOrDie(file, what) {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    usage(`cannot read ${what} ${file}: ${e.message}`);
  }
  return null;
}

function channel(args) {
  const creds = args.plaintext
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(readFileOrDie(args['root-ca'], '--root-ca'));
  const opts = {};
  if (args.servername) {
    opts['grpc.ssl_target_name_override'] = args.servername;
    opts['grpc.default_authority'] = args.servername;
  }
  // Large pushes: the same cap as ztunnel's (wire facts 3.1).
  opts['grpc.max_receive_message_length'] = 200 * 1024 * 1024;
  return { creds, opts };
}

// Request metadata as ztunnel sends it: a bearer token re-read from the file
// for every call (projected tokens rotate) and the cluster id.
function callMetadata(args) {
  const md = new grpc.Metadata();
  if (args['token-file']) {
    const token = readFileOrDie(args['token-file'], '--token-file').toString('utf8').trim();
    md.set('authorization', `Bearer ${token}`);
  }
  md.set('clusterid', args['cluster-id'] || 'Kubernetes');
  return md;
}

// The node sent on the first request of each type: id and metadata in the
// shape ztunnel uses (wire facts 3.1).
function node(args) {
  const pod = args['pod-name'] || 'ztunnel-jsclient';
  const ns = args['pod-namespace'] || 'istio-system';
  const ip = args['instance-ip'] || '127.0.0.1';
  const fields = {
    NAME: pod,
    NAMESPACE: ns,
    INSTANCE_IPS: ip,
    NODE_NAME: args['node-name'] || 'jsclient-node',
    CLUSTER_ID: args['cluster-id'] || 'Kubernetes',
  };
  for (const m of args.meta) {
    const eq = m.indexOf('=');
    fields[m.slice(0, eq)] = m.slice(eq + 1);
  }
  const structFields = {};
  for (const [k, v] of Object.entries(fields)) structFields[k] = { stringValue: v };
  return {
    id: args['node-id'] || `ztunnel~${ip}~${pod}.${ns}~${ns}.svc.cluster.local`,
    metadata: { fields: structFields },
  };
}

// ------------------------------------------------------------------ ads

const TYPES = [TYPE_ADDRESS, TYPE_AUTHZ];

const TO_OBJECT = { longs: String, enums: String, bytes: String, defaults: false, oneofs: false };

// Text form of a 4- or 16-byte address (RFC 5952 for IPv6); other lengths
// as "hex:<bytes>" so a malformed address stays visible.
function ipText(b64) {
  const b = Buffer.from(b64 || '', 'base64');
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length !== 16) return `hex:${b.toString('hex')}`;
  const g = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

// "<network>/<ip>" of every address of a decoded workload or service, the
// form ztunnel uses for on-demand lookups.
function addressList(a) {
  if (a.workload) return (a.workload.addresses || []).map((x) => `${a.workload.network || ''}/${ipText(x)}`);
  if (a.service) return (a.service.addresses || []).map((x) => `${x.network || ''}/${ipText(x.address)}`);
  return [];
}

// Decodes one Resource of a response of type typeUrl. Returns
// {name, version, kind, value, error}; error is null when the resource is
// acceptable, else the reason (value/kind stay set when the bytes decoded).
function decodeResource(r, typeUrl, types) {
  const out = { name: r.name || '', version: r.version || '', kind: null, value: null, error: null };
  const any = r.resource;
  try {
    if (!any) throw new Error('no resource body');
    if (any.typeUrl !== typeUrl) throw new Error(`Any type_url "${any.typeUrl}" is not the response's`);
    const value = any.value || Buffer.alloc(0);
    let key;
    if (typeUrl === TYPE_ADDRESS) {
      const a = types.address.toObject(types.address.decode(value), TO_OBJECT);
      out.value = a;
      out.addresses = addressList(a);
      if (a.workload) {
        out.kind = 'workload';
        key = a.workload.uid || '';
      } else if (a.service) {
        out.kind = 'service';
        key = `${a.service.namespace || ''}/${a.service.hostname || ''}`;
      } else {
        throw new Error('Address holds neither a workload nor a service');
      }
    } else if (typeUrl === TYPE_AUTHZ) {
      const p = types.authz.toObject(types.authz.decode(value), TO_OBJECT);
      out.value = p;
      out.kind = 'policy';
      key = `${p.namespace || ''}/${p.name || ''}`;
    } else {
      throw new Error(`unsubscribed type ${typeUrl}`);
    }
    if (key !== out.name) throw new Error(`name does not match content ("${key}")`);
  } catch (e) {
    out.error = e.message.replace(/\s+/g, ' ');
  }
  return out;
}

function loadInitialVersions(file) {
  let j;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    usage(`--initial-versions ${file}: ${e.message}`);
  }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) usage(`--initial-versions ${file}: not an object`);
  for (const [t, m] of Object.entries(j)) {
    if (!TYPES.includes(t)) usage(`--initial-versions ${file}: unknown type URL "${t}"`);
    if (m === null || typeof m !== 'object' || Object.values(m).some((v) => typeof v !== 'string')) {
      usage(`--initial-versions ${file}: "${t}" must map names to version strings`);
    }
  }
  return j;
}

function runAds(args) {
  const t0 = Date.now();
  const root = lib.loadRoot();
  const types = {
    address: root.lookupType('istio.workload.Address'),
    authz: root.lookupType('istio.security.Authorization'),
  };
  const initial = args['initial-versions'] ? loadInitialVersions(args['initial-versions']) : {};
  const forced = new Set(args.nack);
  let outFd;
  try {
    outFd = fs.openSync(args.out, 'w');
  } catch (e) {
    usage(`cannot open --out ${args.out}: ${e.message}`);
  }
  // writeSync: each line is in the file when the handler that made it returns.
  const emit = (obj) => fs.writeSync(outFd, `${JSON.stringify(obj)}\n`);

  // Accepted name -> version per type, as ztunnel keeps it for reconnects:
  // resources rejected by a NACK are left out so the server sends them again.
  const accepted = {};
  for (const t of TYPES) accepted[t] = {};
  const saveVersions = () => {
    if (!args['save-versions']) return;
    const tmp = `${args['save-versions']}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(accepted));
    fs.renameSync(tmp, args['save-versions']);
  };

  const { creds, opts } = channel(args);
  const services = lib.loadGrpc();
  const client = new services.ads(args.target, creds, opts);
  const call = client.DeltaAggregatedResources(callMetadata(args));
  let done = false;
  const seen = new Set();

  const finish = (code) => {
    if (done) return;
    done = true;
    fs.closeSync(outFd);
    client.close();
    process.exit(code);
  };

  call.on('data', (resp) => {
    if (done) return;
    const typeUrl = resp.typeUrl || '';
    const resources = (resp.resources || []).map((r) => decodeResource(r, typeUrl, types));
    const problems = [];
    for (const r of resources) {
      if (r.error) problems.push(`${r.name}: ${r.error}`);
      else if (forced.has(r.name)) {
        r.error = 'rejected by --nack';
        problems.push(`${r.name}: ${r.error}`);
      }
    }
    if (!TYPES.includes(typeUrl)) problems.push(`response: unsubscribed type "${typeUrl}"`);
    const error = problems.length ? problems.join('; ') : null;
    const removed = resp.removedResources || [];
    if (accepted[typeUrl]) {
      for (const r of resources) if (!r.error) accepted[typeUrl][r.name] = r.version;
      for (const n of removed) delete accepted[typeUrl][n];
    }
    const ack = { typeUrl, responseNonce: resp.nonce || '' };
    if (error) ack.errorDetail = { code: grpc.status.INVALID_ARGUMENT, message: error };
    call.write(ack);
    emit({
      t: Date.now() - t0,
      type_url: typeUrl,
      nonce: resp.nonce || '',
      system_version_info: resp.systemVersionInfo || '',
      resources: resources.map((r) => {
        const o = { name: r.name, version: r.version, kind: r.kind, value: r.value };
        if (r.addresses) o.addresses = r.addresses;
        if (r.error) o.error = r.error;
        return o;
      }),
      removed,
      acked: error === null,
      error,
    });
    saveVersions();
    if (!seen.has(typeUrl) && TYPES.includes(typeUrl)) {
      seen.add(typeUrl);
      if (seen.size === TYPES.length) process.stdout.write('ready\n');
    }
  });
  // 'status' comes for every end of the call; 'error' too for non-OK ones
  // and must have a listener or the process throws.
  call.on('error', () => {});
  call.on('status', (st) => {
    if (done) return;
    emit({ t: Date.now() - t0, event: 'closed', by: 'server', code: st.code, details: st.details || '' });
    finish(EXIT_STREAM_ENDED);
  });
  call.on('end', () => {});

  const stop = (why) => {
    if (done) return;
    emit({ t: Date.now() - t0, event: 'closed', by: 'client', code: grpc.status.CANCELLED, details: why });
    call.cancel();
    finish(EXIT_OK);
  };
  if (args['exit-after-ms'] !== undefined) setTimeout(() => stop('--exit-after-ms'), Number(args['exit-after-ms']));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  for (const t of TYPES) {
    call.write({ typeUrl: t, node: node(args), initialResourceVersions: initial[t] || {} });
  }
}

// ------------------------------------------------------------------ csr

function pemBlocks(text) {
  return String(text).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) || [];
}

// URIs of a certificate's subjectAltName. Node prints the extension as
// "DNS:a, URI:b"; values with special characters come JSON-quoted.
function sanUris(cert) {
  const s = cert.subjectAltName || '';
  const out = [];
  const re = /URI:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  let m;
  while ((m = re.exec(s)) !== null) out.push(m[1].startsWith('"') ? JSON.parse(m[1]) : m[1].trim());
  return out;
}

function spki(key) {
  return key.export({ type: 'spki', format: 'der' });
}

// Checks a cert_chain against the identity asked for and our public key.
// Returns {problems: [...], leafUri, notBefore, notAfter}; no problems means
// verified.
function verifyChain(chain, identity, publicKey) {
  const problems = [];
  const res = { problems, leafUri: null, notBefore: null, notAfter: null };
  if (chain.length < 2) problems.push(`chain has ${chain.length} element(s), need leaf and root`);
  // Element i: its first certificate is the one the previous element must be
  // signed by; the last element may be a bundle of several roots.
  const elems = [];
  for (let i = 0; i < chain.length; i++) {
    const blocks = pemBlocks(chain[i]);
    if (blocks.length === 0) {
      problems.push(`element ${i} holds no PEM certificate`);
      return res;
    }
    if (blocks.length > 1 && i !== chain.length - 1) problems.push(`element ${i} holds ${blocks.length} certificates`);
    try {
      elems.push(blocks.map((b) => new crypto.X509Certificate(b)));
    } catch (e) {
      problems.push(`element ${i} does not parse: ${e.message}`);
      return res;
    }
  }
  const leaf = elems[0][0];
  const uris = sanUris(leaf);
  res.leafUri = uris.join(',');
  res.notBefore = new Date(leaf.validFrom).toISOString();
  res.notAfter = new Date(leaf.validTo).toISOString();
  if (uris.length !== 1 || uris[0] !== identity) problems.push(`leaf URI SAN "${res.leafUri}" is not ${identity}`);
  const now = Date.now();
  if (now + 60000 < Date.parse(leaf.validFrom) || now > Date.parse(leaf.validTo)) {
    problems.push(`leaf not valid now (${res.notBefore} .. ${res.notAfter})`);
  }
  if (publicKey && !spki(leaf.publicKey).equals(spki(publicKey))) problems.push('leaf public key is not ours');
  for (let i = 0; i + 1 < elems.length; i++) {
    const child = elems[i][0];
    const isLast = i + 1 === elems.length - 1;
    const candidates = isLast ? elems[i + 1] : [elems[i + 1][0]];
    const issuer = candidates.find((c) => child.checkIssued(c) && child.verify(c.publicKey));
    if (!issuer) {
      problems.push(`element ${i} is not signed by element ${i + 1}`);
    } else if (isLast && !(issuer.checkIssued(issuer) && issuer.verify(issuer.publicKey))) {
      problems.push(`last element: the issuer of element ${i} is not self-signed`);
    }
  }
  return res;
}

// Makes a P-256 key and a CSR with an empty subject and one critical URI
// SAN, as ztunnel does (wire facts 4), with the openssl CLI.
function makeCsr(identity) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'control-client-'));
  try {
    execFileSync(
      'openssl',
      [
        'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256',
        '-keyout', 'key.pem', '-subj', '/', '-addext', `subjectAltName=critical,URI:${identity}`,
        '-out', 'req.csr',
      ],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 15000 },
    );
    return {
      csr: fs.readFileSync(path.join(dir, 'req.csr'), 'utf8'),
      key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The public key inside a CSR given with --csr-file, or null when openssl
// cannot read it (garbage on purpose).
function csrPublicKey(csrText) {
  try {
    const pem = execFileSync('openssl', ['req', '-noout', '-pubkey'], {
      input: csrText,
      stdio: ['pipe', 'pipe', 'ignore'],
      timeout: 15000,
    });
    return crypto.createPublicKey(pem);
  } catch (e) {
    return null;
  }
}

function runCsr(args) {
  const identity = args.identity;
  let csr;
  let publicKey = null;
  if (args['csr-file']) {
    csr = readFileOrDie(args['csr-file'], '--csr-file').toString('utf8');
    publicKey = csrPublicKey(csr);
  } else {
    let made;
    try {
      made = makeCsr(identity);
    } catch (e) {
      usage(`openssl req failed: ${e.stderr ? String(e.stderr).trim() : e.message}`);
    }
    csr = made.csr;
    publicKey = crypto.createPublicKey(made.key);
    if (args['key-out']) fs.writeFileSync(args['key-out'], made.key, { mode: 0o600 });
  }
  const req = { csr, validityDuration: String(args.ttl !== undefined ? args.ttl : 86400) };
  if (args.impersonate) req.metadata = { fields: { ImpersonatedIdentity: { stringValue: identity } } };

  const { creds, opts } = channel(args);
  const services = lib.loadGrpc();
  const client = new services.ca(args.target, creds, opts);
  const deadline = new Date(Date.now() + Number(args['timeout-ms'] || 10000));
  client.CreateCertificate(req, callMetadata(args), { deadline }, (err, resp) => {
    client.close();
    const out = { ok: !err, code: err ? err.code : 0, details: err ? err.details || '' : '' };
    let exit = EXIT_OK;
    if (err) {
      Object.assign(out, { chain_len: 0, leaf_uri: null, not_after: null, verified: false });
      exit = EXIT_GRPC_ERROR;
    } else {
      const chain = resp.certChain || [];
      const v = verifyChain(chain, identity, publicKey);
      if (!publicKey) v.problems.push('no public key to compare (the --csr-file does not parse)');
      Object.assign(out, {
        chain_len: chain.length,
        leaf_uri: v.leafUri,
        not_before: v.notBefore,
        not_after: v.notAfter,
        verified: v.problems.length === 0,
        problems: v.problems,
      });
      if (args.out) fs.writeFileSync(args.out, chain.map((c) => (c.endsWith('\n') ? c : `${c}\n`)).join(''));
      if (!out.verified) exit = EXIT_NOT_VERIFIED;
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
    process.exitCode = exit;
  });
}

// ------------------------------------------------------------------ main

const args = parseArgs(process.argv.slice(2));
if (args.mode === 'ads') runAds(args);
else runCsr(args);
