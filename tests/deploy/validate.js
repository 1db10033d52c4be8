// node tests/deploy/validate.js FILE...: validates every document of each
// Kubernetes manifest against the OpenAPI schema of its apiVersion and kind,
// as bundled (ajv-compiled) in the kubernetes-models package: types,
// required fields, enums and formats, offline. A document whose kind has no
// schema there fails. `--values FILE` reads an Istio ztunnel chart values
// file instead and validates the parts that become Kubernetes objects
// (resources: ResourceRequirements, tolerations, podAnnotations/podLabels as
// string maps). Prints "ok FILE KIND NAME" or "bad FILE KIND NAME: why" per
// document; exits 1 if anything is bad.
"use strict";
const fs = require("fs");
const YAML = require("yaml");

function model(apiVersion, kind) {
	const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : [null, apiVersion];
	const path = group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
	try {
		return require(path)[kind];
	} catch (e) {
		return null;
	}
}

function check(Model, obj) {
	try {
		new Model(obj).validate();
		return null;
	} catch (e) {
		return String(e.message || e).replace(/\s+/g, " ");
	}
}

let bad = 0;
function report(file, what, err) {
	if (err) bad++;
	console.log(`${err ? "bad" : "ok"} ${file} ${what}${err ? ": " + err : ""}`);
}

function manifest(file) {
	const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
	let n = 0;
	for (const d of docs) {
		if (d.errors.length) {
			report(file, "(yaml)", d.errors.map((e) => e.message).join("; "));
			continue;
		}
		const o = d.toJS();
		if (o === null) continue;
		n++;
		const what = `${o.kind} ${o.metadata && o.metadata.name}`;
		const M = o.apiVersion && o.kind ? model(o.apiVersion, o.kind) : null;
		report(file, what, M ? check(M, o) : `no schema for ${o.apiVersion} ${o.kind}`);
	}
	if (n === 0) report(file, "(empty)", "no document");
}

function values(file) {
	const v = YAML.parse(fs.readFileSync(file, "utf8")) || {};
	const { Pod } = require("kubernetes-models/v1/Pod");
	// The values become parts of the chart's pod: put them in a pod and
	// validate that (one container carrying the resources).
	const pod = {
		apiVersion: "v1",
		kind: "Pod",
		metadata: { name: "values", annotations: v.podAnnotations || {}, labels: v.podLabels || {} },
		spec: {
			containers: [{ name: "istio-proxy", image: v.image || "x", resources: v.resources || {} }],
			tolerations: v.tolerations || [],
		},
	};
	if (v.imagePullPolicy) pod.spec.containers[0].imagePullPolicy = v.imagePullPolicy;
	report(file, "values as a Pod", check(Pod, pod));
}

const args = process.argv.slice(2);
if (args.length === 0) {
	console.error("usage: validate.js FILE... | --values FILE");
	process.exit(2);
}
for (let i = 0; i < args.length; i++) {
	if (args[i] === "--values") values(args[++i]);
	else manifest(args[i]);
}
process.exit(bad ? 1 : 0);
