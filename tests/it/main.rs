//! The integration tests, as one test binary: one link instead of one per file, and shared
//! support compiled once. Suites that need the emulator's parts are compiled only with its
//! feature.

mod support;

#[cfg(feature = "emulator")]
mod behaviour;
#[cfg(feature = "emulator")]
mod bulk_streams;
mod cloudflare_bulk;
mod cloudflare_errors;
mod cloudflare_listing;
mod cloudflare_raw;
mod cloudflare_values;
mod diagnostics;
#[cfg(feature = "emulator")]
mod emulator;
#[cfg(feature = "emulator")]
mod emulator_rules;
mod fastly_bulk;
mod fastly_listing;
mod fastly_raw;
mod fastly_replay;
mod fastly_values;
#[cfg(feature = "emulator")]
mod faults;
#[cfg(feature = "emulator")]
mod fixture;
mod handles;
mod hostile_answers;
#[cfg(feature = "emulator")]
mod hostile_bulk;
mod key_paths;
#[cfg(feature = "emulator")]
mod kv_conformance;
#[cfg(feature = "emulator")]
mod persist;
#[cfg(feature = "emulator")]
mod prefix_deletes;
mod readme;
mod tidy;
mod tracing_secrets;
#[cfg(all(feature = "emulator", feature = "transfer"))]
mod transfer;
