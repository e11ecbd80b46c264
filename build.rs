//! Produces the generated clients in `OUT_DIR`, one file per spec: `<spec stem>.rs`.
//!
//! With the `codegen` feature (the default) progenitor runs on `specs/<stem>.yaml`; without it
//! the checked-in snapshot `specs/generated/<stem>.rs` (written by `cargo xtask regen`, identical
//! to what generation produces) is copied, and no generator crate is compiled.

#[cfg(feature = "codegen")]
#[allow(dead_code)] // The xtask uses the rest of the module.
#[path = "codegen.rs"]
mod codegen;

use std::path::{Path, PathBuf};

/// The specs, by file stem. `src/<provider>/raw.rs` includes `OUT_DIR/<stem>.rs`.
const SPECS: [&str; 2] = ["fastly-kv", "cloudflare-kv"];

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    for stem in SPECS {
        let code = produce(stem);
        let out = out_dir.join(format!("{stem}.rs"));
        // Unchanged output keeps its mtime, so dependents of the crate need not rebuild.
        if std::fs::read_to_string(&out).ok().as_deref() != Some(code.as_str()) {
            std::fs::write(&out, code).unwrap_or_else(|e| fail(&format!("{}: {e}", out.display())));
        }
    }
}

#[cfg(feature = "codegen")]
fn produce(stem: &str) -> String {
    println!("cargo:rerun-if-changed=codegen.rs");
    let spec = format!("specs/{stem}.yaml");
    println!("cargo:rerun-if-changed={spec}");
    codegen::generate(Path::new(&spec)).unwrap_or_else(|e| fail(&e))
}

#[cfg(not(feature = "codegen"))]
fn produce(stem: &str) -> String {
    let snapshot = format!("specs/generated/{stem}.rs");
    println!("cargo:rerun-if-changed={snapshot}");
    std::fs::read_to_string(Path::new(&snapshot)).unwrap_or_else(|e| {
        fail(&format!(
            "{snapshot}: {e} (run `cargo xtask regen` to write the snapshot)"
        ))
    })
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
