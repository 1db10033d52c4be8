'use strict';
// Shared loading code for fake_istiod.js and client_check.js.
//
// Two views of the same .proto files:
//  - a proto-loader package definition, which grpc-js uses to build the
//    service handlers and client stubs (message <-> plain object with
//    camelCase keys, enums as strings, bytes as Buffer, int64 as string);
//  - a protobufjs Root, used directly to encode and decode the messages that
//    travel inside google.protobuf.Any (istio.workload.Address and
//    istio.security.Authorization), which grpc-js never sees as a type.
// Both read proto/*.proto (ours) plus services.proto and ca_service.proto
// (test-only service blocks).

const path = require('path');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const HERE = __dirname;
const PROTO_DIR = process.env.ZT_PROTO_DIR || path.resolve(HERE, '../../proto');
const INCLUDE_DIRS = [PROTO_DIR, HERE];

const TYPE_ADDRESS = 'type.googleapis.com/istio.workload.Address';
const TYPE_AUTHZ = 'type.googleapis.com/istio.security.Authorization';

const LOADER_OPTS = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: INCLUDE_DIRS,
};

function loadGrpc() {
  const def = protoLoader.loadSync('services.proto', LOADER_OPTS);
  const pkg = grpc.loadPackageDefinition(def);
  return {
    ads: pkg.envoy.service.discovery.v3.AggregatedDiscoveryService,
    ca: pkg.istio.v1.auth.IstioCertificateService,
  };
}

function loadRoot() {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of INCLUDE_DIRS) {
      const p = path.join(dir, target);
      if (fs.existsSync(p)) return p;
    }
    return target;
  };
  root.loadSync('services.proto', { keepCase: false });
  root.resolveAll();
  return root;
}

module.exports = {
  grpc,
  protobuf,
  HERE,
  PROTO_DIR,
  TYPE_ADDRESS,
  TYPE_AUTHZ,
  loadGrpc,
  loadRoot,
};
