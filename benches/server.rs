//! The emulator binary for the benchmarks, run out of process: started with arguments,
//! stopped on drop. Shared by `kv.rs` and `jobs.rs` (included with `#[path]`).

use std::process::{Child, Command, Stdio};

use edgekv::emulator::DEFAULT_TOKEN;
use edgekv::fastly;

/// The emulator binary, started with `args`, stopped on drop.
pub struct Server {
    child: Child,
    /// The Fastly API's base URL.
    pub fastly: String,
    /// The Cloudflare API's base URL.
    pub cloudflare: String,
}

impl Server {
    /// The emulator binary started with `args`, once it has printed its URLs.
    pub fn start(args: &[&str]) -> Server {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgekv-emulator"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the emulator binary starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .expect("the emulator prints its URLs");
        let fastly = first
            .strip_prefix("fastly: ")
            .expect("the Fastly URL comes first")
            .to_string();
        let second = lines
            .next()
            .and_then(Result::ok)
            .expect("the emulator prints its URLs");
        let cloudflare = second
            .strip_prefix("cloudflare: ")
            .expect("then the Cloudflare URL")
            .to_string();
        // Keep draining the emulator's output so it never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            fastly,
            cloudflare,
        }
    }

    /// A Fastly client for it, without retries.
    pub fn fastly(&self) -> fastly::Client {
        let mut policy = edgekv::policy::RequestPolicy::default();
        policy.retry = edgekv::policy::RetryPolicy::disabled();
        fastly::Client::builder(DEFAULT_TOKEN)
            .base_url(&self.fastly)
            .policy(policy)
            .build()
            .expect("a client")
    }
}

impl Server {
    /// A Cloudflare client for it.
    pub fn cloudflare(&self) -> edgekv::cloudflare::Client {
        let credential = DEFAULT_TOKEN;
        edgekv::cloudflare::Client::builder(credential, edgekv::emulator::DEFAULT_ACCOUNT)
            .base_url(&self.cloudflare)
            .build()
            .expect("a client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of this process's `/proc/self/status`, in KiB (0 where there is none).
#[allow(dead_code)] // benchmark 2 and 6 read it; a bench that does not is built too
pub fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_default();
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
