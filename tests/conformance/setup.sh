#!/usr/bin/env bash
# Installs the conformance tests' pinned Node packages (@grpc/grpc-js,
# @grpc/proto-loader, protobufjs; versions in package.json and
# package-lock.json) into tests/conformance/node_modules, from the lock file;
# or, given a directory (tests/deploy), that directory's.
# Does nothing when they are already there at the locked versions.
# Quiet on success; on failure prints why and exits non-zero.
set -euo pipefail
here=$(cd "${1:-$(dirname "$0")}" && pwd)

fail() {
	echo "conformance setup: $*" >&2
	exit 1
}

command -v node >/dev/null 2>&1 || fail "node not found (need Node.js >= 18; apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || fail "npm not found (apt-get install npm)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
	fail "Node.js $(node --version) is too old (need >= 18)"

# Installed and matching the lock file? Compare each direct dependency's
# installed version with the pinned one.
# shellcheck disable=SC2016  # the single-quoted text is JavaScript
installed_ok() {
	(cd "$here" && node -e '
		const deps = require("./package.json").dependencies;
		for (const [name, want] of Object.entries(deps)) {
			let have;
			try { have = require(`${name}/package.json`).version; } catch (e) { process.exit(1); }
			if (have !== want) process.exit(1);
		}
	') >/dev/null 2>&1
}

if installed_ok; then
	exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --ignore-scripts: none of these packages needs an install script
# (protobufjs's postinstall only checks for its optional CLI).
if ! (cd "$here" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >"$log" 2>&1; then
	tail -n 20 "$log" >&2
	fail "'npm ci' in $here failed (is the npm registry reachable?)"
fi
installed_ok || fail "packages installed but versions do not match package.json"
