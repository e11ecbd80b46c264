#!/usr/bin/env bash
# Benchmark 5: the build cost edgekv puts on a dependent, against the official-ish clients of the
# two APIs, in one run. Each variant is a tiny crate built clean with `cargo build --release` in
# its own target directory, one after the other (2 cores: run nothing else meanwhile).
# Needs the registry once for `cargo fetch`; then offline. About 15 minutes.
#
#   bash benches/build_cost.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

variant() { # name, dependency line, a type the program names
  mkdir -p "$work/$1/src"
  printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s\n' "$1" "$2" > "$work/$1/Cargo.toml"
  printf 'fn main() {\n    println!("{}", std::any::type_name::<%s>());\n}\n' "$3" > "$work/$1/src/main.rs"
  (cd "$work/$1" && cargo fetch --quiet)
}

seconds() { # builds one variant clean, prints the seconds
  local start end
  start=$(date +%s.%N)
  (cd "$work/$1" && cargo build --release --quiet)
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

edgekv="edgekv = { path = \"$root\""
variant edgekv-codegen "$edgekv }" "edgekv::fastly::Client"
variant edgekv-snapshot "$edgekv, default-features = false, features = [\"rustls\"] }" "edgekv::fastly::Client"
variant edgekv-native-codegen "$edgekv, default-features = false, features = [\"codegen\", \"native-tls\"] }" "edgekv::fastly::Client"
variant edgekv-native-snapshot "$edgekv, default-features = false, features = [\"native-tls\"] }" "edgekv::fastly::Client"
variant anchor-fastly-api 'fastly-api = "15"' "fastly_api::apis::configuration::Configuration"
variant anchor-cloudflare 'cloudflare = "0.14"' "cloudflare::framework::Environment"

declare -A took
for name in anchor-cloudflare anchor-fastly-api edgekv-snapshot edgekv-codegen edgekv-native-snapshot edgekv-native-codegen; do
  took[$name]=$(seconds "$name")
  echo "$name: ${took[$name]} s" >&2
done

# A rebuild after touching one facade file, in the default (codegen) variant.
touch "$root/src/fastly/handle.rs"
start=$(date +%s.%N)
(cd "$work/edgekv-codegen" && cargo build --release --quiet)
rebuild=$(echo "$(date +%s.%N) - $start" | bc)

ratio() { echo "scale=2; $1 / ${took[anchor-cloudflare]}" | bc; }
echo "| variant | clean release build | ÷ cloudflare crate |"
echo "|---|---|---|"
for name in anchor-cloudflare anchor-fastly-api edgekv-snapshot edgekv-codegen edgekv-native-snapshot edgekv-native-codegen; do
  printf '| %s | %.1f s | %s |\n' "$name" "${took[$name]}" "$(ratio "${took[$name]}")"
done
printf '\nRebuild after touching src/fastly/handle.rs (codegen variant): %.1f s\n' "$rebuild"
