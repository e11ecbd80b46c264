//! The emulator of both APIs as a standalone server, for other services' tests.
//!
//! `cargo run --features emulator --bin edgekv-emulator -- --port 8787` prints the base URLs of
//! both APIs and serves until interrupted (SIGINT or SIGTERM), then stops cleanly.
//!
//! `--persist DIR` keeps the state in a log in `DIR`: every write is on disk before it is
//! answered (it survives SIGKILL), and a restart with the same `DIR` serves it again.
//!
//! `--cloudflare-budget 1200/300` and `--fastly-budget 1000/3600` answer 429 past N counted
//! requests per window of SECONDS, counted as each provider counts (Cloudflare every request,
//! Fastly all but reads); scaled down (`1200/3`) they make a budgeted job quick to test.

use std::time::Duration;

use edgekv::emulator::{Budget, Emulator, EmulatorConfig};

const USAGE: &str = "usage: edgekv-emulator [--port N] [--token T]... [--account ID] \
[--latency-ms N] [--rate-limited FRACTION] [--retry-after-ms N] [--server-errors FRACTION] [--seed N] \
[--persist DIR] [--cloudflare-budget N/SECONDS] [--fastly-budget N/SECONDS]";

fn main() -> std::process::ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let emulator = match Emulator::start(config.clone()).await {
            Ok(emulator) => emulator,
            Err(e) => {
                match &config.persist {
                    Some(dir) => eprintln!(
                        "cannot start on 127.0.0.1:{} persisting in {}: {e}",
                        config.port,
                        dir.display()
                    ),
                    None => eprintln!("cannot listen on 127.0.0.1:{}: {e}", config.port),
                }
                return std::process::ExitCode::FAILURE;
            }
        };
        say(&format!("fastly: {}", emulator.fastly_url()));
        say(&format!("cloudflare: {}", emulator.cloudflare_url()));
        say(&format!(
            "cloudflare account: {}",
            config.cloudflare_account
        ));
        say(&format!("token: {}", config.fastly_tokens.join(",")));
        if let Some(dir) = &config.persist {
            say(&format!("persisting in: {}", dir.display()));
        }
        wait_for_stop().await;
        emulator.stop().await;
        say("stopped");
        std::process::ExitCode::SUCCESS
    })
}

/// Prints a line; a reader that went away (a closed pipe) must not stop the server.
fn say(line: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<EmulatorConfig, String> {
    let mut config = EmulatorConfig::default();
    let mut tokens = Vec::new();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--port" => {
                config.port = value()?
                    .parse()
                    .map_err(|_| "--port: not a port".to_string())?
            }
            "--token" => tokens.push(value()?),
            "--account" => config.cloudflare_account = value()?,
            "--latency-ms" => {
                config.faults.latency = Duration::from_millis(number(value()?)? as u64)
            }
            "--rate-limited" => config.faults.rate_limited = number(value()?)?,
            "--retry-after-ms" => {
                config.faults.retry_after = Duration::from_millis(number(value()?)? as u64)
            }
            "--server-errors" => config.faults.server_errors = number(value()?)?,
            "--seed" => config.faults.seed = number(value()?)? as u64,
            "--persist" => config.persist = Some(value()?.into()),
            "--cloudflare-budget" => config.cloudflare_budget = Some(budget(&flag, value()?)?),
            "--fastly-budget" => config.fastly_budget = Some(budget(&flag, value()?)?),
            "--help" | "-h" => {
                return Err(
                    "the emulator of the Fastly KV Store and Cloudflare Workers KV APIs".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !tokens.is_empty() {
        config.fastly_tokens = tokens.clone();
        config.cloudflare_tokens = tokens;
    }
    Ok(config)
}

/// A budget written `N/SECONDS` (SECONDS may have a fraction).
fn budget(flag: &str, text: String) -> Result<Budget, String> {
    let bad = || format!("{flag}: {text:?} is not N/SECONDS");
    let (requests, seconds) = text.split_once('/').ok_or_else(bad)?;
    let requests: u32 = requests.parse().map_err(|_| bad())?;
    let seconds: f64 = seconds.parse().map_err(|_| bad())?;
    let per = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if requests == 0 || per.is_zero() {
        return Err(format!("{flag}: {text:?} allows nothing"));
    }
    Ok(Budget::new(requests, per))
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
