// Mints the keys, JWKS documents and tokens test_waypoint_jwt.sh sends,
// with Node's crypto (OpenSSL underneath): no token comes from our code.
//   node tests/e2e/jwt_mint.js <out-dir> <issuer>
// Writes jwks.json (RSA k1, EC P-256 e1), jwks_rotated.json (RSA k2) and
// <name>.jwt for each token below, timed around the real clock.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const [out, ISS] = process.argv.slice(2);
const NOW = Math.floor(Date.now() / 1000);
const rsa1 = crypto.generateKeyPairSync('rsa', {modulusLength: 2048});
const rsa2 = crypto.generateKeyPairSync('rsa', {modulusLength: 2048});
const ec = crypto.generateKeyPairSync('ec', {namedCurve: 'P-256'});
const jwk = (kp, kid) => Object.assign(kp.publicKey.export({format: 'jwk'}), {kid, use: 'sig'});
fs.writeFileSync(path.join(out, 'jwks.json'), JSON.stringify({keys: [jwk(rsa1, 'k1'), jwk(ec, 'e1')]}));
fs.writeFileSync(path.join(out, 'jwks_rotated.json'), JSON.stringify({keys: [jwk(rsa2, 'k2')]}));

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const seg = (obj) => b64(JSON.stringify(obj));
function token(alg, key, kid, claims) {
    const input = seg({alg, typ: 'JWT', kid}) + '.' + seg(claims);
    let sig;
    if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
    else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), {key, dsaEncoding: 'ieee-p1363'});
    else if (alg === 'HS256') sig = crypto.createHmac('sha256', key).update(input).digest();
    else sig = Buffer.alloc(0);
    return input + '.' + b64(sig);
}
const base = {iss: ISS, sub: 'alice', aud: 'svc-web', iat: NOW - 5, nbf: NOW - 5, exp: NOW + 3600,
              groups: ['admin', 'dev'], team: 'blue', realm: {tier: 'gold'}};
const w = (name, claims, alg = 'RS256', key = rsa1.privateKey, kid = 'k1') =>
    fs.writeFileSync(path.join(out, name + '.jwt'), token(alg, key, kid, claims));
const m = (o) => Object.assign({}, base, o);

w('alice', base);
w('alice_es256', base, 'ES256', ec.privateKey, 'e1');
w('bob', m({sub: 'bob', groups: ['dev'], team: 'red', realm: {tier: 'silver'}}));
w('expired', m({exp: NOW - 600, nbf: NOW - 7200, iat: NOW - 7200}));
w('not_yet', m({nbf: NOW + 3600}));
w('wrong_iss', m({iss: 'https://evil.example'}));
w('wrong_aud', m({aud: 'someone-else'}));
w('bad_sig', base, 'RS256', rsa2.privateKey, 'k1');
w('alg_none', base, 'none', null, 'k1');
w('hs256_confusion', base, 'HS256', rsa1.publicKey.export({type: 'spki', format: 'pem'}), 'k1');
w('rotated', m({sub: 'carol'}), 'RS256', rsa2.privateKey, 'k2');
w('huge', m({pad: 'x'.repeat(9000)}));
