#!/usr/bin/env bash
# Prints the Debian version of a package built from this tree:
# <debian/changelog's version>~git<commit date, UTC>.<short commit>, with
# ".dirty" when the work tree has uncommitted changes (as `git describe
# --dirty` says); "~" sorts it before the plain release version.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(dpkg-parsechangelog -l debian/changelog -S Version)
commit=$(git rev-parse --short=7 HEAD)
date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
dirty=
case $(git describe --always --dirty) in *-dirty) dirty=.dirty ;; esac
echo "${base}~git${date}.${commit}${dirty}"
