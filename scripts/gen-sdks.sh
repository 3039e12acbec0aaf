#!/usr/bin/env bash
# Generates the client SDKs from every .proto under proto/ (no per-service list: a new service's
# .proto shows up after one run):
#   sdk/python      the pip package `meshwork-sdk`: messages (_pb2.py), typed stubs (.pyi) and
#                   gRPC clients (_pb2_grpc.py + .pyi) per package, and meshwork/_clients.py
#                   (one typed attribute per service) behind the hand-written meshwork.connect().
#   sdk/typescript  the npm package `@meshwork/sdk`: protoc-gen-es messages and service
#                   descriptors (gen/**/*_pb.js + .d.ts, no build step) and gen/clients.js (one
#                   Connect client per service) behind the hand-written connect() of
#                   src/node.js (gRPC) and src/web.js (gRPC-Web).
# The generated code is checked in (so `pip install ./sdk/python` needs no protoc and no
# generator, and reviews show what changed); `--check` regenerates into a temporary folder and
# fails when the checked-in code differs (the drift test).
#
# usage: scripts/gen-sdks.sh [--check] [--proto DIR] [--out DIR]
#   --proto DIR  the proto root (default proto/)       --out DIR  the SDK root (default sdk/)
# The generators are pinned (PY_TOOLS, TS_TOOLS) and installed into ~/.cache/meshwork/sdkgen,
# outside the repository, once (a stamp file names the versions there). buf runs
# protoc-gen-es (scripts/install-deps.sh installs buf).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
proto_dir=$root/proto
out=$root/sdk
check=0
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=1 ;;
    --proto) proto_dir=$(cd "$2" && pwd); shift ;;
    --out) out=$2; shift ;;
    *) echo "gen-sdks: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# grpcio-tools fixes the generated code's runtime floors (protobuf 7.35.1, grpcio 1.85.4: see
# sdk/python/pyproject.toml); change them together.
PY_TOOLS=(grpcio-tools==1.85.4 mypy-protobuf==5.1.0)
TS_TOOLS=(@bufbuild/protoc-gen-es@2.17.0 @bufbuild/protobuf@2.17.0)
cache=$HOME/.cache/meshwork/sdkgen
venv=$cache/py
ts=$cache/ts
mkdir -p "$cache"
# One installer at a time (tests run this script in parallel); a stamp names what is installed.
exec 9>"$cache/.lock"
flock 9
if [ "$(cat "$venv/.tools" 2>/dev/null)" != "${PY_TOOLS[*]}" ]; then
  rm -rf "$venv"
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}"
  echo "${PY_TOOLS[*]}" > "$venv/.tools"
fi
if [ "$(cat "$ts/.tools" 2>/dev/null)" != "${TS_TOOLS[*]}" ]; then
  rm -rf "$ts"
  mkdir -p "$ts"
  echo '{"private": true}' > "$ts/package.json"
  (cd "$ts" && npm install --silent --no-audit --no-fund "${TS_TOOLS[@]}")
  echo "${TS_TOOLS[*]}" > "$ts/.tools"
fi
flock -u 9
buf=${BUF:-$HOME/.cache/meshwork/buf/node_modules/.bin/buf}
[ -x "$buf" ] || buf=$(command -v buf) || { echo "gen-sdks: no buf; run scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gen=$work/gen
mkdir -p "$gen/python" "$gen/typescript/gen"

mapfile -t protos < <(cd "$proto_dir" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
mapfile -t own < <(printf '%s\n' "${protos[@]}" | grep -v '^google/')

# --- Python -----------------------------------------------------------------------------------
# google/api/*.proto is not generated: the package depends on googleapis-common-protos, which
# ships the same modules (google.api.annotations_pb2) for every Python gRPC library.
PATH="$venv/bin:$PATH" "$venv/bin/python" -m grpc_tools.protoc -I "$proto_dir" \
  --python_out="$gen/python" --pyi_out="$gen/python" \
  --grpc_python_out="$gen/python" --mypy_grpc_out=quiet:"$gen/python" \
  --descriptor_set_out="$work/descriptors.binpb" --include_imports --include_source_info \
  "${own[@]}"
# --- TypeScript -------------------------------------------------------------------------------
# Every file, google/api included (the generated imports are relative). JavaScript with .d.ts
# beside it, so the package needs no TypeScript build.
"$buf" generate "$proto_dir" --template "{\"version\": \"v2\", \"plugins\": [{\"local\": \"$ts/node_modules/.bin/protoc-gen-es\",
  \"out\": \"$gen/typescript/gen\", \"opt\": [\"target=js+dts\", \"import_extension=js\"]}]}"

"$venv/bin/python" - "$work/descriptors.binpb" "$gen/python" "$gen/typescript/gen" <<'PY'
"""Adds the package __init__.py files and writes meshwork/_clients.py and clients.js/.d.ts (one
client per service) from the descriptors."""
import re
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

descriptors, out, ts_out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
for d in sorted(p for p in (out / "meshwork").rglob("*") if p.is_dir()):
    (d / "__init__.py").write_text("")

files = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptors).read_bytes()).file
services = []  # (attribute, module, stub, full name, first line of the leading comment)
for f in sorted(files, key=lambda f: f.name):
    if not f.name.startswith("meshwork/"):
        continue
    comments = {tuple(l.path): l.leading_comments for l in f.source_code_info.location}
    module = f.name[: -len(".proto")].replace("/", ".") + "_pb2_grpc"
    for i, s in enumerate(f.service):
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s.name).lower()
        doc = comments.get((6, i), "").strip().split("\n")[0].strip()
        services.append([snake, module, s.name + "Stub", f"{f.package}.{s.name}", doc, f.package, f.name, s.name])
names = [s[0] for s in services]
for s in services:  # two packages with one service name: qualify both with their package
    if names.count(s[0]) > 1:
        s[0] = s[5].replace("meshwork.", "").replace(".", "_") + "_" + s[0]

lines = [
    "# Generated by scripts/gen-sdks.sh from proto/. DO NOT EDIT.",
    '"""One typed client per meshwork service, all on one channel (see meshwork.connect)."""',
    "",
    "from __future__ import annotations",
    "",
    "from types import TracebackType",
    "from typing import Optional, Type",
    "",
    "import grpc",
    "",
]
for module in sorted({s[1] for s in services}):
    package, name = module.rsplit(".", 1)
    lines.append(f"from {package} import {name}")
lines += [
    "",
    "SERVICES = (",
    *[f"    {s[3]!r}," for s in services],
    ")",
    '"""The full names of every service these clients call."""',
    "",
    "",
    "class Clients:",
    '    """Clients for every service, sharing one channel; close() (or `with`) closes it."""',
    "",
    "    def __init__(self, channel: grpc.Channel) -> None:",
    "        self.channel = channel",
]
for attr, module, stub, full, doc, *_ in services:
    lines.append(f"        self.{attr}: {module.rsplit('.', 1)[1]}.{stub} = {module.rsplit('.', 1)[1]}.{stub}(channel)")
    lines.append(f'        """{full}{": " + doc if doc else ""}"""')
lines += [
    "",
    "    def close(self) -> None:",
    '        """Closes the channel; calls in flight are cancelled."""',
    "        self.channel.close()",
    "",
    "    def __enter__(self) -> Clients:",
    "        return self",
    "",
    "    def __exit__(",
    "        self,",
    "        kind: Optional[Type[BaseException]],",
    "        error: Optional[BaseException],",
    "        traceback: Optional[TracebackType],",
    "    ) -> None:",
    "        self.close()",
    "",
]
(out / "meshwork" / "_clients.py").write_text("\n".join(lines))

# TypeScript: the same services, camelCase (urlShortener), as Connect clients.
def camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)

imports = {}
for s in services:
    imports.setdefault("./" + s[6][: -len(".proto")] + "_pb.js", []).append(s[7])
header = "// Generated by scripts/gen-sdks.sh from proto/. DO NOT EDIT.\n"
js = [header, 'import { createClient } from "@connectrpc/connect";']
dts = [header, 'import type { Client, Transport } from "@connectrpc/connect";']
for path, names in sorted(imports.items()):
    js.append(f"import {{ {', '.join(names)} }} from {path!r};".replace("'", '"'))
    dts.append(f"import type {{ {', '.join(names)} }} from {path!r};".replace("'", '"'))
js += ["", "/** The full names of every service these clients call. */", "export const SERVICES = ["]
js += [f'  "{s[3]}",' for s in services] + ["];", ""]
js += ["/** Returns one client per service, all over `transport`. */", "export function createClients(transport) {", "  return {"]
js += [f"    {camel(s[0])}: createClient({s[7]}, transport)," for s in services] + ["  };", "}", ""]
dts += ["", "/** The full names of every service these clients call. */", "export declare const SERVICES: readonly string[];", ""]
dts += ["/** One client per service. */", "export interface Clients {"]
for s in services:
    dts.append(f"  /** {s[3]}{': ' + s[4] if s[4] else ''} */")
    dts.append(f"  {camel(s[0])}: Client<typeof {s[7]}>;")
dts += ["}", "", "/** Returns one client per service, all over `transport`. */",
        "export declare function createClients(transport: Transport): Clients;", ""]
(ts_out / "clients.js").write_text("\n".join(js))
(ts_out / "clients.d.ts").write_text("\n".join(dts))
PY

# The generated part of sdk/python: every package folder under meshwork/ and _clients.py. The
# rest (pyproject.toml, meshwork/__init__.py, meshwork/connect.py, py.typed) is hand-written.
sync_python() { # $1: the SDK's python folder to write
  local dest=$1
  mkdir -p "$dest/meshwork"
  find "$dest/meshwork" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  rm -f "$dest/meshwork/_clients.py"
  cp -R "$gen/python/meshwork/." "$dest/meshwork/"
}

# The generated part of sdk/typescript: gen/. The rest (package.json, src/) is hand-written.
sync_typescript() { # $1: the SDK's typescript folder to write
  local dest=$1
  mkdir -p "$dest"
  rm -rf "$dest/gen"
  cp -R "$gen/typescript/gen" "$dest/gen"
}

if [ "$check" = 1 ]; then
  # Compare a fresh generation with the checked-in one, hand-written files included.
  # tar, not cp: a concurrent `pip install ./sdk/python` may add and remove its build folders.
  mkdir -p "$work/check"
  tar -C "$out" --exclude=__pycache__ --exclude='*.egg-info' --exclude=build --exclude=node_modules -cf - . |
    tar -C "$work/check" -xf -
  sync_python "$work/check/python"
  sync_typescript "$work/check/typescript"
  if ! diff -r -x __pycache__ -x '*.egg-info' -x build -x node_modules "$out" "$work/check" >"$work/diff"; then
    echo "gen-sdks: the checked-in SDKs differ from what proto/ generates; run scripts/gen-sdks.sh" >&2
    head -50 "$work/diff" >&2
    exit 1
  fi
  echo "gen-sdks: the checked-in SDKs match proto/"
else
  sync_python "$out/python"
  sync_typescript "$out/typescript"
  echo "gen-sdks: wrote $out/python and $out/typescript (${#protos[@]} protos)"
fi
