#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, test and run ckpt.
# Needs root (apt-get). Installs nothing when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache git
  libtorch-dev python3-torch          # libtorch 1.13; Python torch for the interop tests
  libsqlitecpp-dev libsqlite3-dev sqlite3
  libfmt-dev libspdlog-dev catch2
  libxxhash-dev xxhash libssl-dev     # XXH3-128 (and xxhsum to check it); SHA-256 via libcrypto
  libdeflate-dev                      # CRC-32 of zip records
  libcli11-dev nlohmann-json3-dev     # the ckpt command-line tool
  libcairo2-dev                       # its `history --plot`: PNG and SVG (brings fontconfig)
  libgloo-dev                         # Gloo's headers: the multi-rank tests' process groups
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
