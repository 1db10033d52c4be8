'use strict';
// A grpc-js *client* that exercises fake_istiod.js the way a ztunnel would,
// so the fake is known to be right before our C client is pointed at it.
// Prints one "PASS <what>" or "FAIL <what>: <why>" line per check; exits 0
// when it ran to the end (the caller counts the lines), 1 on a crash.
//
// Usage: node client_check.js --target 127.0.0.1:PORT --host istiod.test
//   --root root-cert.pem --token TOKEN --config state.json --push-state next.json
//   --events events.jsonl --csr req.csr --identity spiffe://... --out-chain DIR
//   --pid PID_OF_FAKE (for the SIGUSR2 check)
// The state files are the ones selftest.sh writes; the names checked below
// match them.

const fs = require('fs');
const path = require('path');
const lib = require('./lib');

const { grpc, TYPE_ADDRESS, TYPE_AUTHZ } = lib;

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

const root = lib.loadRoot();
const T_ADDRESS = root.lookupType('istio.workload.Address');
const T_AUTHZ = root.lookupType('istio.security.Authorization');
const services = lib.loadGrpc();

let failed = 0;
function check(cond, what, why) {
  if (cond) {
    console.log(`PASS ${what}`);
  } else {
    failed++;
    console.log(`FAIL ${what}${why ? `: ${why}` : ''}`);
  }
  return cond;
}

function sameSet(a, b) {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function creds() {
  return grpc.credentials.createSsl(fs.readFileSync(args.root));
}

const channelOpts = () => ({
  'grpc.ssl_target_name_override': args.host,
  'grpc.default_authority': args.host,
});

function meta(token) {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('clusterid', 'Kubernetes');
  return md;
}

const NODE = {
  id: 'ztunnel~10.0.0.9~ztunnel-abc.istio-system~istio-system.svc.cluster.local',
  metadata: { fields: { NAME: { stringValue: 'ztunnel-abc' }, NODE_NAME: { stringValue: 'node-a' } } },
};

// A stream wrapper whose next() resolves with the next response, or rejects
// on a gRPC error or after a timeout.
function openStream(client, token) {
  const call = client.DeltaAggregatedResources(meta(token));
  const queue = [];
  const waiters = [];
  let error = null;
  call.on('data', (m) => {
    const w = waiters.shift();
    if (w) w.resolve(m);
    else queue.push(m);
  });
  call.on('error', (e) => {
    error = e;
    while (waiters.length) waiters.shift().reject(e);
  });
  call.on('end', () => {});
  return {
    call,
    next(ms = 5000) {
      if (queue.length) return Promise.resolve(queue.shift());
      if (error) return Promise.reject(error);
      return new Promise((resolve, reject) => {
        const w = { resolve, reject };
        waiters.push(w);
        setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(new Error(`no response within ${ms} ms`));
          }
        }, ms);
      });
    },
  };
}

// Decodes every resource of a response; returns {ok: {name: object}, bad: {name: reason}}.
function decode(resp) {
  const ok = {};
  const bad = {};
  for (const r of resp.resources || []) {
    const any = r.resource || {};
    try {
      if (any.typeUrl !== resp.typeUrl) throw new Error(`Any type_url ${any.typeUrl}`);
      if (any.typeUrl === TYPE_ADDRESS) {
        const a = T_ADDRESS.toObject(T_ADDRESS.decode(any.value), { oneofs: true, enums: String });
        const key = a.workload ? a.workload.uid : a.service ? `${a.service.namespace}/${a.service.hostname}` : null;
        if (key !== r.name) throw new Error(`decoded key ${key}`);
        ok[r.name] = a;
      } else if (any.typeUrl === TYPE_AUTHZ) {
        const p = T_AUTHZ.toObject(T_AUTHZ.decode(any.value), { enums: String });
        if (`${p.namespace}/${p.name}` !== r.name) throw new Error(`decoded key ${p.namespace}/${p.name}`);
        ok[r.name] = p;
      } else {
        throw new Error('unknown type');
      }
    } catch (e) {
      bad[r.name] = e.message;
    }
  }
  return { ok, bad };
}

function nackMessage(bad) {
  return Object.entries(bad)
    .map(([n, why]) => `${n}: ${why}`)
    .join('; ');
}

function readEvents() {
  return fs
    .readFileSync(args.events, 'utf8')
    .split('\n')
    .filter((l) => l)
    .map((l) => JSON.parse(l));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function adsChecks() {
  const client = new services.ads(args.target, creds(), channelOpts());
  const s = openStream(client, args.token);
  s.call.write({ typeUrl: TYPE_ADDRESS, node: NODE });
  s.call.write({ typeUrl: TYPE_AUTHZ, node: NODE });
  const r1 = await s.next();
  const r2 = await s.next();
  const byType = { [r1.typeUrl]: r1, [r2.typeUrl]: r2 };
  const addr = byType[TYPE_ADDRESS];
  const authz = byType[TYPE_AUTHZ];
  check(addr && authz, 'initial responses carry both type URLs', `${r1.typeUrl}, ${r2.typeUrl}`);
  check(addr.nonce && authz.nonce && addr.nonce !== authz.nonce, 'nonces are set and distinct');
  const da = decode(addr);
  const dz = decode(authz);
  const names = (r) => (r.resources || []).map((x) => x.name);
  check(
    sameSet(names(addr), ['c1//v1/Pod/default/app', 'c1//v1/Pod/default/db', 'default/app.default.svc.cluster.local', 'bad']),
    'Address resource names',
    names(addr).join(','),
  );
  check(sameSet(names(authz), ['default/deny-9090', 'istio-system/allow-ns']), 'Authorization resource names', names(authz).join(','));
  check((addr.resources || []).every((r) => /^[0-9a-f]{16}$/.test(r.version)), 'every resource has a version');
  const app = da.ok['c1//v1/Pod/default/app'];
  check(
    app && app.workload && app.workload.addresses.length === 2 &&
      Buffer.from(app.workload.addresses[0]).equals(Buffer.from([10, 1, 0, 5])) &&
      app.workload.addresses[1].length === 16 && app.workload.tunnelProtocol === 'HBONE',
    'Workload decodes (ips helper: 4- and 16-byte addresses, enum)',
    JSON.stringify(app),
  );
  check(
    app && app.workload.services['default/app.default.svc.cluster.local'].ports[0].targetPort === 8080,
    'Workload services map decodes',
  );
  const svc = da.ok['default/app.default.svc.cluster.local'];
  check(
    svc && svc.service && Buffer.from(svc.service.addresses[0].address).equals(Buffer.from([10, 96, 0, 10])),
    'Service decodes with VIP',
    JSON.stringify(svc),
  );
  check(Object.keys(da.bad).length === 1 && da.bad.bad !== undefined, 'raw malformed resource fails to decode', JSON.stringify(da.bad));
  const deny = dz.ok['default/deny-9090'];
  check(
    deny && deny.action === 'DENY' && deny.rules[0].clauses[0].matches[0].destinationPorts[0] === 9090,
    'Authorization decodes',
    JSON.stringify(deny),
  );
  const allow = dz.ok['istio-system/allow-ns'];
  check(
    allow && allow.rules[0].clauses[0].matches[0].sourceIps[0].length === 8 &&
      Buffer.from(allow.rules[0].clauses[0].matches[0].sourceIps[0].address).equals(Buffer.from([10, 0, 0, 0])),
    'Authorization cidr helper',
    JSON.stringify(allow),
  );
  check(Object.keys(dz.bad).length === 0, 'Authorization: nothing undecodable');

  // NACK the Address response (it held a malformed resource), ACK the other.
  s.call.write({ typeUrl: TYPE_ADDRESS, responseNonce: addr.nonce, errorDetail: { code: 3, message: nackMessage(da.bad) } });
  s.call.write({ typeUrl: TYPE_AUTHZ, responseNonce: authz.nonce });
  const accepted = {};
  for (const r of addr.resources) if (da.ok[r.name]) accepted[r.name] = r.version;

  // Push: the new state changes one workload, drops another and the raw one.
  await sleep(200);
  fs.copyFileSync(args['push-state'], `${args.config}.tmp`);
  fs.renameSync(`${args.config}.tmp`, args.config);
  const p = await s.next();
  const dp = decode(p);
  check(p.typeUrl === TYPE_ADDRESS, 'push is for Address', p.typeUrl);
  check(sameSet(names(p), ['c1//v1/Pod/default/app']), 'push carries only the changed workload', names(p).join(','));
  check(sameSet(p.removedResources || [], ['c1//v1/Pod/default/db', 'bad']), 'push removes vanished names', (p.removedResources || []).join(','));
  check(
    dp.ok['c1//v1/Pod/default/app'] && dp.ok['c1//v1/Pod/default/app'].workload.status === 'UNHEALTHY',
    'pushed workload has the new content',
  );
  check(p.resources[0].version !== accepted['c1//v1/Pod/default/app'], 'changed resource has a new version');
  s.call.write({ typeUrl: TYPE_ADDRESS, responseNonce: p.nonce });
  let extra = null;
  await s.next(700).then((m) => { extra = m; }, () => {});
  check(extra === null, 'no push for the unchanged Authorization type', extra && extra.typeUrl);
  accepted['c1//v1/Pod/default/app'] = p.resources[0].version;
  delete accepted['c1//v1/Pod/default/db'];
  s.call.end();

  // Reconnect with initial_resource_versions that name a resource that no
  // longer exists: the fake sends everything it has plus that removal.
  await sleep(100);
  const s2 = openStream(client, args.token);
  s2.call.write({ typeUrl: TYPE_ADDRESS, node: NODE, initialResourceVersions: { ...accepted, 'c1//v1/Pod/default/gone': 'x' } });
  const q = await s2.next();
  check(sameSet(q.removedResources || [], ['c1//v1/Pod/default/gone']), 'reconnect: stale initial_resource_versions name removed', (q.removedResources || []).join(','));
  check(sameSet(names(q), ['c1//v1/Pod/default/app', 'default/app.default.svc.cluster.local']), 'reconnect: current resources resent', names(q).join(','));
  s2.call.write({ typeUrl: TYPE_ADDRESS, responseNonce: q.nonce });
  await sleep(200);
  s2.call.end();

  // On-demand: subscribe ["*"] + unsubscribe ["*"] sends nothing until a
  // name ("<network>/<ip>" or a resource name) is asked for.
  const s6 = openStream(client, args.token);
  s6.call.write({ typeUrl: TYPE_ADDRESS, node: NODE, resourceNamesSubscribe: ['*'], resourceNamesUnsubscribe: ['*'] });
  let early = null;
  await s6.next(500).then((m) => { early = m; }, () => {});
  check(early === null, 'on-demand: nothing sent for the initial request');
  s6.call.write({ typeUrl: TYPE_ADDRESS, resourceNamesSubscribe: ['/10.1.0.5'] });
  const od = await s6.next();
  check(sameSet(names(od), ['c1//v1/Pod/default/app']), 'on-demand: "/10.1.0.5" resolves to the workload', names(od).join(','));
  s6.call.end();

  // SIGUSR2 to the fake ends an open stream with UNAVAILABLE.
  const s4 = openStream(client, args.token);
  s4.call.write({ typeUrl: TYPE_AUTHZ, node: NODE });
  await s4.next();
  process.kill(Number(args.pid), 'SIGUSR2');
  let resetCode = null;
  await s4.next().then(() => {}, (e) => { resetCode = e.code; });
  check(resetCode === grpc.status.UNAVAILABLE, 'SIGUSR2 ends open streams with UNAVAILABLE', `code ${resetCode}`);

  // A client verifying another host name must not connect (the SAN matters).
  const other = new services.ads(args.target, creds(), {
    'grpc.ssl_target_name_override': 'other.test',
    'grpc.default_authority': 'other.test',
  });
  const s5 = openStream(other, args.token);
  s5.call.write({ typeUrl: TYPE_ADDRESS, node: NODE });
  let tlsCode = null;
  await s5.next().then(() => {}, (e) => { tlsCode = e.code; });
  check(tlsCode === grpc.status.UNAVAILABLE, 'TLS: wrong server name is refused', `code ${tlsCode}`);
  other.close();

  // Wrong token: the stream fails with UNAUTHENTICATED.
  const s3 = openStream(client, 'wrong-token');
  s3.call.write({ typeUrl: TYPE_ADDRESS, node: NODE });
  let code = null;
  await s3.next().then(() => {}, (e) => { code = e.code; });
  check(code === grpc.status.UNAUTHENTICATED, 'ADS with wrong token is UNAUTHENTICATED', `code ${code}`);
  client.close();

  // The event log must show what the fake received.
  await sleep(200);
  const ev = readEvents().filter((e) => e.event === 'request');
  const first = ev.filter((e) => e.stream === 1);
  check(first.length === 5, 'event log: five requests on the first stream', `${first.length}`);
  check(
    first[0].type_url === TYPE_ADDRESS && first[0].has_node && first[0].node_id === NODE.id &&
      first[0].node_metadata.NODE_NAME === 'node-a' && first[0].metadata.authorization === `Bearer ${args.token}` &&
      first[0].metadata.clusterid === 'Kubernetes',
    'event log: initial request fields and metadata',
    JSON.stringify(first[0]),
  );
  check(
    first[2].response_nonce === addr.nonce && first[2].error_detail && /^bad: /.test(first[2].error_detail.message) && !first[2].has_node,
    'event log: NACK with error_detail',
    JSON.stringify(first[2]),
  );
  check(first[3].response_nonce === authz.nonce && first[3].error_detail === null, 'event log: ACK');
  const re = ev.find((e) => e.stream === 2);
  check(re && re.initial_resource_versions['c1//v1/Pod/default/gone'] === 'x', 'event log: initial_resource_versions');
}

async function caChecks() {
  const client = new services.ca(args.target, creds(), channelOpts());
  const csr = fs.readFileSync(args.csr, 'utf8');
  const call = (token, req) =>
    new Promise((resolve) => {
      client.CreateCertificate(req, meta(token), (err, resp) => resolve({ err, resp }));
    });
  const req = {
    csr,
    validityDuration: 3600,
    metadata: { fields: { ImpersonatedIdentity: { stringValue: args.identity } } },
  };
  const ok = await call(args.token, req);
  if (check(!ok.err, 'CreateCertificate succeeds', ok.err && ok.err.message)) {
    const chain = ok.resp.certChain || [];
    check(chain.length === 3, 'cert_chain has leaf, intermediate, root', `${chain.length}`);
    chain.forEach((pem, i) => fs.writeFileSync(path.join(args['out-chain'], `chain${i}.pem`), pem));
  }
  const bad = await call('wrong-token', req);
  check(bad.err && bad.err.code === grpc.status.UNAUTHENTICATED, 'CreateCertificate with wrong token is UNAUTHENTICATED');
  const garbage = await call(args.token, { csr: 'not a csr', validityDuration: 60 });
  check(garbage.err && garbage.err.code === grpc.status.INVALID_ARGUMENT, 'garbage CSR is INVALID_ARGUMENT');
  await sleep(100);
  const ev = readEvents().filter((e) => e.event === 'csr');
  const signed = ev.find((e) => e.result === 'signed');
  check(
    signed && signed.identity === args.identity && signed.impersonated === args.identity && signed.ttl === 3600 &&
      signed.csr.san_critical && signed.csr.subject_empty && signed.csr.key === 'P-256',
    'event log: csr identity, impersonation, ttl, CSR shape',
    JSON.stringify(signed),
  );

  // Fault knobs in the state file's "ca" section.
  // Replaces the state file and waits (up to 5 s) until the fake reloaded it.
  const writeState = async (mut) => {
    const loads = () => readEvents().filter((e) => e.event === 'state_loaded').length;
    const before = loads();
    const st = JSON.parse(fs.readFileSync(args.config, 'utf8'));
    mut(st);
    fs.writeFileSync(`${args.config}.tmp`, JSON.stringify(st));
    fs.renameSync(`${args.config}.tmp`, args.config);
    for (let i = 0; i < 100 && loads() === before; i++) await sleep(50);
  };
  await writeState((st) => { st.ca = { fail: { code: grpc.status.UNAVAILABLE, message: 'try later' } }; });
  const failing = await call(args.token, req);
  check(failing.err && failing.err.code === grpc.status.UNAVAILABLE && /try later/.test(failing.err.details), 'ca.fail injects an error');
  await writeState((st) => { st.ca = { omit_root: true, san: 'spiffe://cluster.local/ns/other/sa/x' }; });
  const odd = await call(args.token, req);
  check(!odd.err && odd.resp.certChain.length === 1, 'ca.omit_root sends the leaf only', odd.err && odd.err.message);
  const last = readEvents().filter((e) => e.event === 'csr').pop();
  check(last.san === 'spiffe://cluster.local/ns/other/sa/x' && last.identity === args.identity, 'ca.san overrides the signed SAN');
  await writeState((st) => { delete st.ca; });
  client.close();
}

(async () => {
  try {
    await adsChecks();
    await caChecks();
  } catch (e) {
    check(false, 'client_check ran to the end', e.stack);
  }
  process.exit(0);
})();
