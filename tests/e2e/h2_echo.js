'use strict';
// Test peers for the waypoint's HTTP/2 paths, on stacks that are not ours
// (Node's http2 module, grpc-js):
//   node h2_echo.js h2c NAME PORT        an h2c (prior knowledge) server
//   node h2_echo.js h1 NAME PORT         an HTTP/1.1 server (Node's http):
//                                        the lines below plus "version=",
//                                        "conn=" (which TCP connection,
//                                        from 1), "content-length=",
//                                        "transfer-encoding=", "te=" as
//                                        received; also /close (answers
//                                        with Connection: close) and /bad
//                                        (a head with both Content-Length
//                                        and Transfer-Encoding)
//   node h2_echo.js grpc NAME PORT [SEEN] a gRPC server (h2_echo.proto);
//                                        with SEEN, appends a line
//                                        "Say text=T authority=A" per Say
//   node h2_echo.js multi AUTHORITY N    N concurrent GETs of /m/I on one
//                                        h2c connection: prints how many
//                                        answers named their own path
//   node h2_echo.js seq AUTHORITY PATH... GETs each PATH in turn on one h2c
//                                        connection: prints each body
//   node h2_echo.js reset AUTHORITY N    opens and at once cancels N streams
//                                        (a rapid-reset flood): prints how
//                                        the session ended
//   node h2_echo.js stall AUTHORITY PATH  GETs PATH with a 64 KiB window and
//                                        never reads: prints "stalled" after
//                                        the first bytes, then waits
//   node h2_echo.js call TARGET METHOD TEXT [HEADER=VALUE...]
//                                        a gRPC client: prints the reply's
//                                        fields, or "code=N details=..."
// The h2c server answers every request with text lines "server=NAME",
// "path=", "authority=", "method=", "x-route=", "traceparent=",
// "body-bytes=" and:
//   /status/N       that status
//   /flaky/KEY      503 the first time KEY is seen
//   /trailers       a body then trailers x-trailer: done
//   /big/N          N bytes of body (after the lines)
//   /sleep/MS       answers after MS ms
//   /bighead/N      a response head with N extra fields
//   /_seen/PATH     (GET) what came for PATH: "count=", and the last
//                   request's "authority=" and "body-bytes=" (not counted)
const http = require('http');
const http2 = require('http2');
const path = require('path');

const MODS = path.resolve(__dirname, '../conformance/node_modules');
const grpc = require(path.join(MODS, '@grpc/grpc-js'));
const loader = require(path.join(MODS, '@grpc/proto-loader'));

function echoProto() {
  const def = loader.loadSync(path.join(__dirname, 'h2_echo.proto'), {keepCase: true});
  return grpc.loadPackageDefinition(def).zt.test;
}

function h2c(name, port) {
  const seen = new Set();
  const got = new Map(); // path -> {count, authority, bodyBytes}
  const srv = http2.createServer();
  srv.on('stream', (stream, headers) => {
    const p = headers[':path'] || '';
    let bodyBytes = 0;
    stream.on('data', (d) => { bodyBytes += d.length; });
    stream.on('error', () => {});
    stream.on('end', () => {
      // A stream the client reset may still end here: nothing to answer.
      if (stream.destroyed || stream.closed) return;
      if (p.startsWith('/_seen/')) {
        const g = got.get(p.slice(6)) || {count: 0, authority: '', bodyBytes: 0};
        stream.respond({':status': 200, 'content-type': 'text/plain'});
        stream.end(`count=${g.count}\nauthority=${g.authority}\nbody-bytes=${g.bodyBytes}\n`);
        return;
      }
      got.set(p, {count: ((got.get(p) || {}).count || 0) + 1,
        authority: headers[':authority'] || '', bodyBytes});
      const lines = [`server=${name}`, `path=${p}`, `authority=${headers[':authority'] || ''}`,
        `method=${headers[':method']}`, `x-route=${headers['x-route'] || ''}`,
        `traceparent=${headers['traceparent'] || ''}`,
        `body-bytes=${bodyBytes}`, ''].join('\n');
      let m;
      if ((m = p.match(/^\/status\/(\d+)/))) {
        stream.respond({':status': Number(m[1]), 'content-type': 'text/plain'});
        stream.end(lines);
      } else if ((m = p.match(/\/flaky\/(.+)/)) && !seen.has(m[1])) {
        seen.add(m[1]);
        stream.respond({':status': 503});
        stream.end('try again\n');
      } else if (p === '/trailers') {
        stream.respond({':status': 200}, {waitForTrailers: true});
        stream.on('wantTrailers', () => stream.sendTrailers({'x-trailer': 'done'}));
        stream.end(lines);
      } else if ((m = p.match(/^\/big\/(\d+)/))) {
        stream.respond({':status': 200});
        stream.write(lines);
        stream.end(Buffer.alloc(Number(m[1]), 'x'));
      } else if ((m = p.match(/^\/bighead\/(\d+)/))) {
        const h = {':status': 200};
        for (let i = 0; i < Number(m[1]); i++) h[`x-f${i}`] = 'v';
        stream.respond(h);
        stream.end(lines);
      } else if ((m = p.match(/^\/sleep\/(\d+)/))) {
        setTimeout(() => {
          if (stream.destroyed) return;
          stream.respond({':status': 200});
          stream.end(lines);
        }, Number(m[1]));
      } else {
        stream.respond({':status': 200, 'content-type': 'text/plain', 'x-server': name});
        stream.end(lines);
      }
    });
  });
  srv.listen(port, '0.0.0.0', () => console.log(`h2c ${name} listening on ${port}`));
}

function grpcServer(name, port, seenFile) {
  const pkg = echoProto();
  const seen = new Set();
  const srv = new grpc.Server();
  const reply = (call) => ({text: call.request.text, server: name,
    authority: (call.metadata.get(':authority')[0] || call.getPeer && '') + ''});
  srv.addService(pkg.Echo.service, {
    Say: (call, cb) => {
      if (seenFile) {
        require('fs').appendFileSync(seenFile,
          `Say text=${call.request.text} authority=${call.getHost()}\n`);
      }
      cb(null, reply(call));
    },
    Flaky: (call, cb) => {
      if (!seen.has(call.request.text)) {
        seen.add(call.request.text);
        cb({code: grpc.status.UNAVAILABLE, details: 'first try fails'});
        return;
      }
      cb(null, reply(call));
    },
    Fail: (call, cb) => cb({code: grpc.status.NOT_FOUND, details: call.request.text}),
    Count: (call) => {
      const n = Number(call.request.text);
      for (let i = 0; i < n; i++) call.write({text: String(i), server: name});
      call.end();
    },
  });
  srv.bindAsync(`0.0.0.0:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) { console.error(err.message); process.exit(1); }
    console.log(`grpc ${name} listening on ${port}`);
  });
}

function call(target, method, text, extra) {
  const pkg = echoProto();
  const client = new pkg.Echo(target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const kv of extra) {
    const i = kv.indexOf('=');
    md.set(kv.slice(0, i), kv.slice(i + 1));
  }
  const deadline = new Date(Date.now() + 15000);
  const done = (code) => { client.close(); process.exitCode = code; };
  if (method === 'Count') {
    const got = [];
    const st = client.Count({text}, md, {deadline});
    st.on('data', (m) => got.push(m.text));
    st.on('error', (e) => { console.log(`code=${e.code} details=${e.details}`); done(0); });
    st.on('end', () => { console.log(`count=${got.length} last=${got[got.length - 1]}`); done(0); });
    return;
  }
  client[method]({text}, md, {deadline}, (err, res) => {
    if (err) console.log(`code=${err.code} details=${err.details}`);
    else console.log(`text=${res.text} server=${res.server}`);
    done(0);
  });
}

function multi(authority, n) {
  const session = http2.connect(`http://${authority}`);
  session.on('error', (e) => { console.log(`error=${e.message}`); process.exit(0); });
  let ok = 0, left = n;
  for (let i = 0; i < n; i++) {
    const req = session.request({':path': `/m/${i}`});
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('error', () => {});
    req.on('close', () => {
      if (body.includes(`path=/m/${i}\n`)) ok++;
      if (--left === 0) { console.log(`ok=${ok}`); session.close(); }
    });
    req.end();
  }
}

function seq(authority, paths) {
  const session = http2.connect(`http://${authority}`);
  session.on('error', (e) => { console.log(`error=${e.message}`); process.exit(0); });
  const next = () => {
    if (paths.length === 0) { session.close(); return; }
    const req = session.request({':path': paths.shift()});
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('error', (e) => { console.log(`error=${e.message}`); });
    req.on('close', () => { process.stdout.write(body); next(); });
    req.end();
  };
  next();
}

function reset(authority, n) {
  const session = http2.connect(`http://${authority}`);
  let how = 'open';
  session.on('goaway', (code) => { how = `goaway=${code}`; });
  session.on('error', (e) => { if (how === 'open') how = `error=${e.code}`; });
  session.on('close', () => { console.log(how); process.exit(0); });
  session.on('connect', () => {
    for (let i = 0; i < n && !session.destroyed && !session.closed; i++) {
      const req = session.request({':path': `/reset/${i}`});
      req.on('error', () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
    }
    setTimeout(() => { if (how === 'open') how = 'survived'; session.close(); }, 2000);
  });
}

function stall(authority, p) {
  const session = http2.connect(`http://${authority}`, {settings: {initialWindowSize: 65535}});
  session.on('error', () => {});
  const req = session.request({':path': p});
  req.once('data', () => { req.pause(); console.log('stalled'); });
  req.on('error', () => {});
}

function h1(name, port) {
  const seen = new Set();
  let conns = 0;
  const srv = http.createServer({keepAliveTimeout: 60000});
  srv.on('connection', (sock) => { sock.connId = ++conns; });
  srv.on('request', (req, res) => {
    const p = req.url;
    let bodyBytes = 0;
    req.on('data', (d) => { bodyBytes += d.length; });
    req.on('end', () => {
      const h = req.headers;
      const lines = [`server=${name}`, `path=${p}`, `authority=${h.host || ''}`,
        `method=${req.method}`, `x-route=${h['x-route'] || ''}`,
        `traceparent=${h.traceparent || ''}`, `body-bytes=${bodyBytes}`,
        `version=${req.httpVersion}`, `conn=${req.socket.connId}`,
        `content-length=${h['content-length'] || ''}`,
        `transfer-encoding=${h['transfer-encoding'] || ''}`, `te=${h.te || ''}`, ''].join('\n');
      let m;
      if ((m = p.match(/^\/status\/(\d+)/))) {
        res.writeHead(Number(m[1]), {'content-type': 'text/plain'});
        res.end(lines);
      } else if ((m = p.match(/\/flaky\/(.+)/)) && !seen.has(m[1])) {
        seen.add(m[1]);
        res.writeHead(503, {'content-type': 'text/plain'});
        res.end('try again\n');
      } else if (p === '/trailers') {
        res.writeHead(200, {'content-type': 'text/plain', 'trailer': 'x-trailer'});
        res.write(lines);
        res.addTrailers({'x-trailer': 'done'});
        res.end();
      } else if ((m = p.match(/^\/big\/(\d+)/))) {
        res.writeHead(200, {'content-type': 'application/octet-stream'});
        res.write(lines);
        res.end(Buffer.alloc(Number(m[1]), 'x'));
      } else if (p === '/close') {
        res.writeHead(200, {'content-type': 'text/plain', 'connection': 'close'});
        res.end(lines);
      } else if (p === '/bad') {
        req.socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
      } else {
        res.writeHead(200, {'content-type': 'text/plain', 'x-server': name});
        res.end(lines);
      }
    });
  });
  srv.listen(port, '0.0.0.0', () => console.log(`h1 ${name} listening on ${port}`));
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'h2c') h2c(args[0], Number(args[1]));
else if (mode === 'h1') h1(args[0], Number(args[1]));
else if (mode === 'grpc') grpcServer(args[0], Number(args[1]), args[2]);
else if (mode === 'multi') multi(args[0], Number(args[1]));
else if (mode === 'seq') seq(args[0], args.slice(1));
else if (mode === 'reset') reset(args[0], Number(args[1]));
else if (mode === 'stall') stall(args[0], args[1]);
else if (mode === 'call') call(args[0], args[1], args[2], args.slice(3));
else { console.error('usage: h2_echo.js h2c|grpc NAME PORT | call TARGET METHOD TEXT'); process.exit(2); }
