//! The misbehaving server of the fault suites lives in the library (`edgekv::emulator::faults`),
//! where the emulator's fault injection uses it too.

#[allow(unused_imports)] // Only the fault suites use it.
pub use edgekv::emulator::faults::{FaultyServer, Reply};
