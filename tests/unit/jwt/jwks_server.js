// JWKS endpoints for tests/unit/jwt/test_jwks_fetch.c, on loopback only.
//   node tests/unit/jwt/jwks_server.js <dir>
// Makes two throwaway CAs with the openssl CLI in <dir> (ca1.pem, ca2.pem)
// and a server certificate from each for 127.0.0.1, then listens on
// 127.0.0.1 port 0 three times: HTTPS with ca1's certificate, HTTPS with
// ca2's, and plain HTTP; prints "<port1> <port2> <port3>\n". Exits when its
// standard input closes.
// Paths, the same on each server:
//   /file/<name>    <dir>/www/<name>, read on every request; 500 while absent
//   /size/<n>       n bytes with a Content-Length
//   /chunked/<n>    n bytes in 4 KiB chunks, no Content-Length
//   /hang           never answered
//   /hold/<name>    answered 200 "held" only when /release/<name> comes
//   /release/<name> releases the held request, then answers 200 "released"
//   /redirect       302 to /file/a
'use strict';
const {execFileSync} = require('child_process');
const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');

const dir = process.argv[2];
const p = (name) => path.join(dir, name);
const ossl = (...args) => execFileSync('openssl', args, {stdio: ['ignore', 'ignore', 'pipe']});

fs.mkdirSync(p('www'), {recursive: true});
fs.writeFileSync(p('san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
for (const n of ['1', '2']) {
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
         '-keyout', p(`ca${n}.key`), '-out', p(`ca${n}.pem`), '-days', '2',
         '-subj', `/CN=zt-jwks-test-ca${n}`);
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
         '-keyout', p(`srv${n}.key`), '-out', p(`srv${n}.csr`), '-subj', '/CN=127.0.0.1');
    ossl('x509', '-req', '-in', p(`srv${n}.csr`), '-CA', p(`ca${n}.pem`), '-CAkey',
         p(`ca${n}.key`), '-CAcreateserial', '-out', p(`srv${n}.pem`), '-days', '2',
         '-extfile', p('san.cnf'));
}

const held = new Map();

function handle(req, res) {
    const parts = req.url.split('?')[0].split('/').slice(1);
    const [route, arg] = parts;
    switch (route) {
    case 'file': {
        let body;
        try {
            body = fs.readFileSync(path.join(p('www'), path.basename(arg)));
        } catch (e) {
            res.writeHead(500, {'content-type': 'text/plain'});
            res.end('no such file\n');
            return;
        }
        res.writeHead(200, {'content-type': 'application/json', 'content-length': body.length});
        res.end(body);
        return;
    }
    case 'size': {
        const body = Buffer.alloc(Number(arg), 'a');
        res.writeHead(200, {'content-length': body.length});
        res.end(body);
        return;
    }
    case 'chunked': {
        let left = Number(arg);
        res.writeHead(200, {'content-type': 'application/json'});
        const more = () => {
            while (left > 0) {
                const n = Math.min(left, 4096);
                left -= n;
                if (!res.write(Buffer.alloc(n, 'a'))) {
                    res.once('drain', more);
                    return;
                }
            }
            res.end();
        };
        res.on('error', () => {});
        more();
        return;
    }
    case 'hang':
        return;
    case 'hold':
        held.set(arg, res);
        return;
    case 'release': {
        const h = held.get(arg);
        held.delete(arg);
        if (h && !h.destroyed)
            h.end('held');
        res.end('released');
        return;
    }
    case 'redirect':
        res.writeHead(302, {location: '/file/a'});
        res.end();
        return;
    default:
        res.writeHead(404);
        res.end();
    }
}

const tls = (n) => ({key: fs.readFileSync(p(`srv${n}.key`)), cert: fs.readFileSync(p(`srv${n}.pem`))});
const servers = [https.createServer(tls('1'), handle), https.createServer(tls('2'), handle),
                 http.createServer(handle)];
let listening = 0;
for (const s of servers) {
    s.on('clientError', (err, sock) => sock.destroy());
    s.listen(0, '127.0.0.1', () => {
        if (++listening === servers.length)
            process.stdout.write(servers.map((x) => x.address().port).join(' ') + '\n');
    });
}
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
