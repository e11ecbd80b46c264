//! One test of this binary re-run alone in a child process, for what must not share a process
//! with tests running in parallel: a peak RSS, or tracing's process-wide callsite cache.

use std::process::Output;

/// The name the test harness gives `test` in the module `module_path` (pass `module_path!()`):
/// the module path without the crate's own name, so it follows the module wherever it moves.
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    }
}

/// Runs only the test named `name` of this binary, in a child process with `var` set (the test
/// reads it to know it is the child): the child's output.
pub fn run_alone(name: &str, var: (&str, &str)) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    std::process::Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(var.0, var.1)
        .output()
        .expect("the test binary runs")
}

/// Whether the child ran the one test it was given and it passed (a name that matches no test
/// runs nothing, and that passes too).
pub fn passed_alone(output: &Output) -> bool {
    let stdout = String::from_utf8_lossy(&output.stdout);
    output.status.success() && stdout.contains("test result: ok. 1 passed")
}
