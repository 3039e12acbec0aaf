#!/usr/bin/env bash
# The proto checks of the test command, with buf (proto/buf.yaml): `buf lint` (STANDARD and the
# listed exceptions), `buf format --diff` (fails on any diff; fix with `buf format -w proto`)
# and `buf breaking` against proto/ as committed at HEAD, so an uncommitted wire- or
# source-incompatible edit fails (a deliberate break is a new package version beside the old).
# buf comes from npm, pinned, installed by scripts/install-deps.sh; $BUF overrides it.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=${BUF:-$HOME/.cache/meshwork/buf/node_modules/.bin/buf}
[ -x "$buf" ] || buf=$(command -v buf) || { echo "check-protos: no buf; run scripts/install-deps.sh" >&2; exit 1; }
echo "== buf lint"
"$buf" lint proto
echo "== buf format --diff"
"$buf" format --diff --exit-code proto
echo "== buf breaking (against proto/ at HEAD)"
# The committed proto/ at HEAD is the proto/ of the last commit on main that changed it.
"$buf" breaking proto --against ".git#ref=HEAD,subdir=proto"
echo "protos: lint, format and breaking passed"
