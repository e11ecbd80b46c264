#!/usr/bin/env bash
# Benchmark 5: the build cost edgekv puts on a dependent, against the official-ish clients of the
# two APIs, in one run. Each variant is a tiny crate built clean with `cargo build --release` in
# its own target directory, one after the other (2 cores: run nothing else meanwhile).
# Each tiny crate reads one value on a current-thread tokio runtime.
# Needs the registry once for `cargo fetch`; then offline. About 15 minutes.
#
#   bash benches/build_cost.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

variant() { # name, dependency line, the body of an async block making one call
  mkdir -p "$work/$1/src"
  printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s\ntokio = { version = "1", features = ["rt"] }\n' "$1" "$2" > "$work/$1/Cargo.toml"
  cat > "$work/$1/src/main.rs" <<RUST
fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answered = runtime.block_on(async { $3 });
    println!("{answered}");
}
RUST
  (cd "$work/$1" && cargo fetch --quiet)
}

seconds() { # builds one variant clean, prints the seconds
  local start end
  start=$(date +%s.%N)
  (cd "$work/$1" && cargo build --release --quiet)
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

# Every variant reads one value, so the code a dependent instantiates is compiled too.
edgekv="edgekv = { path = \"$root\""
edgekv_call='let client = edgekv::cloudflare::Client::new("token", "account").unwrap();
        client.namespace("namespace").get("key").await.is_ok()'
variant edgekv-codegen "$edgekv }" "$edgekv_call"
variant edgekv-snapshot "$edgekv, default-features = false, features = [\"rustls\"] }" "$edgekv_call"
variant edgekv-native-codegen "$edgekv, default-features = false, features = [\"codegen\", \"native-tls\"] }" "$edgekv_call"
variant edgekv-native-snapshot "$edgekv, default-features = false, features = [\"native-tls\"] }" "$edgekv_call"
variant anchor-fastly-api 'fastly-api = "15"' 'use fastly_api::apis::{configuration::Configuration, kv_store_item_api as item};
        let mut configuration = Configuration::default();
        let params = item::KvStoreGetItemParams { store_id: "store".into(), key: "key".into() };
        item::kv_store_get_item(&mut configuration, params).await.is_ok()'
variant anchor-cloudflare 'cloudflare = "0.14"' 'use cloudflare::endpoints::workerskv::read_key::ReadKey;
        use cloudflare::framework::{auth::Credentials, client::{async_api::Client, ClientConfig}, Environment};
        let credentials = Credentials::UserAuthToken { token: "token".into() };
        let client = Client::new(credentials, ClientConfig::default(), Environment::Production).unwrap();
        let read = ReadKey { account_identifier: "account", namespace_identifier: "namespace", key: "key" };
        client.request(&read).await.is_ok()'

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

ratio() { printf "%.2f" "$(echo "scale=4; $1 / ${took[anchor-cloudflare]}" | bc)"; }
echo "| variant | clean release build | ÷ cloudflare crate |"
echo "|---|---|---|"
for name in anchor-cloudflare anchor-fastly-api edgekv-snapshot edgekv-codegen edgekv-native-snapshot edgekv-native-codegen; do
  printf '| %s | %.1f s | %s |\n' "$name" "${took[$name]}" "$(ratio "${took[$name]}")"
done
printf '\nRebuild after touching src/fastly/handle.rs (codegen variant): %.1f s\n' "$rebuild"
