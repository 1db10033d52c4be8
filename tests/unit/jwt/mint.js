// Mints the keys, JWKS documents and tokens tests/unit/jwt/test_jwt.c checks,
// with Node's crypto (OpenSSL underneath), so no token comes from our code.
//   node tests/unit/jwt/mint.js <out-dir>
// Writes <out-dir>/jwks1.json (RSA k1, EC e1 P-256, EC e2 P-384, OKP d1),
// jwks2.json (RSA k2: the rotated set) and <name>.jwt for each token below.
// Times are around NOW = 1800000000; the test passes `now` explicitly.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const out = process.argv[2];
const NOW = 1800000000;
const ISS = 'https://issuer.example';

const rsa1 = crypto.generateKeyPairSync('rsa', {modulusLength: 2048});
const rsa2 = crypto.generateKeyPairSync('rsa', {modulusLength: 2048});
const ec256 = crypto.generateKeyPairSync('ec', {namedCurve: 'P-256'});
const ec384 = crypto.generateKeyPairSync('ec', {namedCurve: 'P-384'});
const ed = crypto.generateKeyPairSync('ed25519');

const jwk = (kp, kid) => Object.assign(kp.publicKey.export({format: 'jwk'}), {kid, use: 'sig'});
fs.writeFileSync(path.join(out, 'jwks1.json'), JSON.stringify({
    keys: [jwk(rsa1, 'k1'), jwk(ec256, 'e1'), jwk(ec384, 'e2'), jwk(ed, 'd1')],
}));
fs.writeFileSync(path.join(out, 'jwks2.json'), JSON.stringify({keys: [jwk(rsa2, 'k2')]}));

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const seg = (obj) => b64(JSON.stringify(obj));

function sign(alg, key, input) {
    const data = Buffer.from(input);
    switch (alg) {
    case 'RS256': case 'RS384': case 'RS512':
        return crypto.sign('sha' + alg.slice(2), data, key);
    case 'PS256': case 'PS384': case 'PS512':
        return crypto.sign('sha' + alg.slice(2), data, {
            key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
            saltLength: crypto.constants.RSA_PSS_SALTLEN_DIGEST});
    case 'ES256': case 'ES384':
        return crypto.sign('sha' + alg.slice(2), data, {key, dsaEncoding: 'ieee-p1363'});
    case 'EdDSA':
        return crypto.sign(null, data, key);
    case 'HS256':
        return crypto.createHmac('sha256', key).update(data).digest();
    case 'none':
        return Buffer.alloc(0);
    }
    throw new Error('alg ' + alg);
}

function token(alg, key, kid, claims, extraHeader) {
    const hdr = Object.assign({alg, typ: 'JWT'}, kid ? {kid} : {}, extraHeader || {});
    const input = seg(hdr) + '.' + seg(claims);
    return input + '.' + b64(sign(alg, key, input));
}

const base = {
    iss: ISS, sub: 'alice', aud: ['svc-a', 'other'], azp: 'client-1',
    iat: NOW - 10, nbf: NOW - 10, exp: NOW + 3600,
    groups: ['g1', 'g2'], scope: 'read write', n: 42, b: true,
    realm: {roles: ['admin'], level: {x: 'deep'}},
};
const w = (name, tok) => fs.writeFileSync(path.join(out, name + '.jwt'), tok);
const k1 = rsa1.privateKey;

for (const alg of ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'])
    w(alg.toLowerCase(), token(alg, k1, 'k1', base));
w('es256', token('ES256', ec256.privateKey, 'e1', base));
w('es384', token('ES384', ec384.privateKey, 'e2', base));
w('eddsa', token('EdDSA', ed.privateKey, 'd1', base));
w('eddsa_nokid', token('EdDSA', ed.privateKey, null, base));
w('eddsa_other', token('EdDSA', crypto.generateKeyPairSync('ed25519').privateKey, 'd1', base));
w('nokid', token('RS256', k1, null, base));
w('es256_nokid', token('ES256', ec256.privateKey, null, base));
// exp = nbf = NOW: the test moves `now` across the 60 s skew both ways.
w('edge', token('RS256', k1, 'k1', Object.assign({}, base, {nbf: NOW, exp: NOW})));
w('wrong_iss', token('RS256', k1, 'k1', Object.assign({}, base, {iss: 'https://evil.example'})));
w('wrong_aud', token('RS256', k1, 'k1', Object.assign({}, base, {aud: 'nope'})));
w('aud_scheme', token('RS256', k1, 'k1', Object.assign({}, base, {aud: 'https://svc-a/'})));
w('unknown_kid', token('RS256', k1, 'zzz', base));
w('other_key', token('RS256', rsa2.privateKey, 'k1', base)); // k1's kid, k2's key
w('alg_none', token('none', null, 'k1', base));
w('alg_none_nokid', token('none', null, null, base));
// Key confusion: HMAC with the RSA public key (PEM and JWK forms) as secret.
w('hs256_pem', token('HS256', rsa1.publicKey.export({type: 'spki', format: 'pem'}), 'k1', base));
w('hs256_n', token('HS256', Buffer.from(jwk(rsa1, 'k1').n, 'base64url'), 'k1', base));
w('hs256_x', token('HS256', Buffer.from(jwk(ed, 'd1').x, 'base64url'), 'd1', base));
w('rot_new', token('RS256', rsa2.privateKey, 'k2', base));
w('nosub', token('RS256', k1, 'k1', (({sub, ...rest}) => rest)(base)));
w('exp_string', token('RS256', k1, 'k1', Object.assign({}, base, {exp: 'tomorrow'})));

// Payload nesting: the payload object is depth 1, each object inside adds
// one; nested(n) is n - 1 objects around a string, so depthN is N deep.
function nested(n) {
    let v = 'leaf';
    for (let i = 1; i < n; i++) v = {a: v};
    return v;
}
w('depth16', token('RS256', k1, 'k1', Object.assign({}, base, {deep: nested(16)})));
w('depth17', token('RS256', k1, 'k1', Object.assign({}, base, {deep: nested(17)})));

// Tokens exactly 8192 and 8193 bytes long: pad a claim, then a header field.
function sized(target) {
    const sigLen = b64(sign('RS256', k1, 'x')).length; // fixed for one RSA key
    for (let p = 0; p < 8192; p++)
        for (let q = 0; q < 4; q++) {
            const claims = Object.assign({}, base, {pad: 'x'.repeat(p)});
            const hdr = {alg: 'RS256', typ: 'JWT', kid: 'k1', x: 'y'.repeat(q)};
            if (seg(hdr).length + 1 + seg(claims).length + 1 + sigLen === target)
                return token('RS256', k1, 'k1', claims, {x: 'y'.repeat(q)});
        }
    throw new Error('no token of ' + target + ' bytes');
}
w('len8192', sized(8192));
w('len8193', sized(8193));
