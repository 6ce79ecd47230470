#!/usr/bin/env bash
# Installs Mermaid's parser (the mermaid npm package, with jsdom for the DOM
# it expects in node) for the tests that check the topology diagrams:
# runtime's TestMermaidParses runs runtime/testdata/mermaid-parse.mjs with it.
#
# The versions are pinned by .ci/mermaid/package.json and its
# package-lock.json; they go to $CHOREO_MERMAID_DIR (default
# $HOME/.cache/choreo-mermaid), outside the work tree. A second run with the
# same lock file does nothing. Node.js and npm come from the machine (Debian's
# nodejs and npm packages are installed when missing and we are root).
#
# Usage: .ci/setup-mermaid.sh        (prints the directory on its last line)
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${CHOREO_MERMAID_DIR:-$HOME/.cache/choreo-mermaid}"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "setup-mermaid: installing Debian's nodejs and npm"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
	else
		echo "setup-mermaid: node and npm are required" >&2
		exit 1
	fi
fi

stamp="$dir/.choreo-lock.sha256"
want=$(cat .ci/mermaid/package.json .ci/mermaid/package-lock.json | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$dir/node_modules/mermaid" ] && [ -d "$dir/node_modules/jsdom" ]; then
	echo "setup-mermaid: up to date in $dir"
else
	echo "setup-mermaid: installing into $dir"
	mkdir -p "$dir"
	rm -rf "$dir/node_modules" "$stamp"
	cp .ci/mermaid/package.json .ci/mermaid/package-lock.json "$dir/"
	# --ignore-scripts: nothing to build, and no install script may download.
	(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
	echo "$want" >"$stamp"
fi

# Smoke test: the parser loads and rejects what it must.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'flowchart TB\n    a{"ok"} --> b(("topic"))\n' >"$tmp/good.mmd"
printf 'flowchart TB\n    a{"broken" --> b\n' >"$tmp/bad.mmd"
out=$(node runtime/testdata/mermaid-parse.mjs "$dir" "$tmp/good.mmd" "$tmp/bad.mmd")
if ! grep -q '"file":"[^"]*good.mmd","ok":true' <<<"$out" || ! grep -q '"file":"[^"]*bad.mmd","ok":false' <<<"$out"; then
	echo "setup-mermaid: the parser does not work:" >&2
	echo "$out" >&2
	exit 1
fi
echo "setup-mermaid: mermaid $(node -p "require('$dir/node_modules/mermaid/package.json').version") with node $(node --version) ready"
echo "$dir"
