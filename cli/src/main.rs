//! `edgekv`: Cloudflare Workers KV namespaces, Fastly KV stores, files and a local emulator
//! from a terminal, with copies between them that resume after a kill. A thin shell over the
//! `edgekv` crate's clients and its `transfer` jobs.
//!
//! Data goes to stdout, byte for byte; progress and status go to stderr, drawn as bars on a
//! terminal only. Exit codes are listed in `edgekv --help` ([`exit`]).

mod commands;
mod place;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, as `--help` lists them.
mod exit {
    /// Everything asked was done.
    pub const OK: u8 = 0;
    /// Some keys were not done (refused, not found), or `verify` found differences.
    pub const SOME_FAILED: u8 = 1;
    /// The command line is wrong: an unknown flag, a bad address, a value that cannot be.
    pub const USAGE: u8 = 2;
    /// A credential is missing or refused.
    pub const AUTH: u8 = 3;
    /// The service (or emulator) cannot be reached.
    pub const UNREACHABLE: u8 = 4;
    /// Anything else failed: the service answered an error, a file could not be read.
    pub const FAILED: u8 = 5;
    /// Interrupted (SIGINT, Ctrl-C): the journal keeps what is done; the same command resumes.
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES: &str = "\
Stores: cf:<namespace id or title>, fastly:<store id or name>; files: *.json (wrangler's bulk \
JSON), *.ndjson (Fastly's batch lines), a directory, or - for stdin/stdout.
Credentials: CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_KEY with CLOUDFLARE_EMAIL) and \
CLOUDFLARE_ACCOUNT_ID; FASTLY_API_TOKEN. With --emulator they are never sent: the emulator's \
token is (EDGEKV_EMULATOR_TOKEN changes it).
Journals: in EDGEKV_STATE_DIR, else $XDG_STATE_HOME/edgekv, else ~/.local/state/edgekv; a \
job's is removed when the job finishes, and kept after an error or an interruption: the same \
command then resumes it (--restart starts over).

Exit codes:
  0    everything asked was done
  1    some keys were not done (refused, not found), or verify found differences
  2    usage: an unknown flag, a bad address, a value that cannot be
  3    a credential is missing or refused
  4    the service (or emulator) cannot be reached
  5    anything else failed (the service answered an error, a file could not be read)
  130  interrupted: the journal keeps what is done; run the same command again to resume";

/// The emulator's address when `--emulator` names none (`edgekv emulator` serves there).
const DEFAULT_EMULATOR: &str = "http://127.0.0.1:8787";

#[derive(Parser, Debug)]
#[command(
    name = "edgekv",
    version,
    about = "Cloudflare Workers KV and Fastly KV stores, files and a local emulator: get, put, \
             list, delete, and resumable copy, sync, import, export and verify between them",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Send every request to a local emulator (`edgekv emulator`), at --emulator=URL or
    /// http://127.0.0.1:8787, instead of the services; their credentials are never sent
    #[arg(
        long,
        global = true,
        value_name = "URL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = DEFAULT_EMULATOR,
        env = "EDGEKV_EMULATOR"
    )]
    emulator: Option<String>,

    /// The Cloudflare account of cf: stores (default: CLOUDFLARE_ACCOUNT_ID; with --emulator,
    /// the emulator's)
    #[arg(long, global = true, value_name = "ID")]
    account: Option<String>,

    /// Print JSON on stdout: the value, the keys, the final report
    #[arg(long, global = true)]
    json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Print a line per chunk on stderr when it is not a terminal (on one, a bar is drawn)
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a key's value on stdout, byte for byte (with --json: value, metadata, expiry)
    Get {
        /// The store: cf:<namespace> or fastly:<store>
        store: String,
        /// The key
        key: String,
    },
    /// Write a value: the argument, a file (--file) or stdin
    Put(PutArgs),
    /// Delete keys: those named, every key under --prefix (a resumable job), or those of a JSON
    /// list (--keys-from: what `list --json` prints, or wrangler's array of names)
    Delete(DeleteArgs),
    /// List the keys of a store, one a line, control characters written \u{..} (with --json:
    /// exactly, an array of {name, expiration, metadata}, as wrangler prints it)
    List {
        /// The store: cf:<namespace> or fastly:<store>
        store: String,
        /// Only keys starting with this
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Cloudflare namespaces and Fastly stores: list, create, rename, delete
    #[command(subcommand, visible_alias = "namespaces")]
    Stores(StoresCommand),
    /// Copy every key (under --prefix) from SRC to DST: stores of either provider, or a file
    /// on one side (then it is an import or an export). Resumes after a kill
    Copy {
        /// Where the keys come from: a store or a file
        src: String,
        /// Where they go: a store or a file
        dst: String,
        /// Only keys starting with this
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Make DST hold what SRC holds: a copy, then with --delete the deletion of DST's keys
    /// SRC lacks (refused past --max-delete-percent)
    Sync {
        /// The store whose keys are wanted
        src: String,
        /// The store made to hold them
        dst: String,
        /// Only keys starting with this
        #[arg(long, default_value = "")]
        prefix: String,
        /// Also delete DST's keys that SRC lacks (without it they are kept)
        #[arg(long)]
        delete: bool,
        /// The most of DST's keys --delete may remove, in percent
        #[arg(long, default_value_t = 10, value_name = "PERCENT")]
        max_delete_percent: u32,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Write a file's entries into a store (wrangler's bulk JSON, Fastly's lines, a directory)
    Import {
        /// The file: *.json, *.ndjson, a directory, or - for stdin
        file: String,
        /// The store
        dst: String,
        #[command(flatten)]
        file_job: FileJobArgs,
    },
    /// Write a store's entries to a file (wrangler's bulk JSON, Fastly's lines, a directory)
    Export {
        /// The store
        src: String,
        /// The file: *.json, *.ndjson, a directory, or - for stdout
        file: String,
        #[command(flatten)]
        file_job: FileJobArgs,
    },
    /// Compare two stores: keys, values, and metadata and expiry where both keep them
    Verify {
        /// The first store
        src: String,
        /// The second store
        dst: String,
        /// Only keys starting with this
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Serve both APIs locally until interrupted, for tests and trials
    Emulator(EmulatorArgs),
}

#[derive(Args, Debug)]
struct PutArgs {
    /// The store: cf:<namespace> or fastly:<store>
    store: String,
    /// The key
    key: String,
    /// The value (without it and without --file, stdin is read)
    #[arg(conflicts_with = "file")]
    value: Option<String>,
    /// Read the value from this file
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Expire the entry after this many seconds
    #[arg(long, value_name = "SECONDS", conflicts_with = "expiration")]
    ttl: Option<u64>,
    /// Expire the entry at this UNIX time
    #[arg(long, value_name = "UNIX_SECONDS")]
    expiration: Option<i64>,
    /// Metadata: JSON for a Cloudflare namespace, text for a Fastly store
    #[arg(long, value_name = "METADATA")]
    metadata: Option<String>,
    /// Write only if the key has no entry
    #[arg(long, conflicts_with = "if_version")]
    if_absent: bool,
    /// Write only if the entry's version is this one (Fastly's generation)
    #[arg(long, value_name = "VERSION")]
    if_version: Option<u64>,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// The store: cf:<namespace> or fastly:<store>
    store: String,
    /// Keys to delete
    keys: Vec<String>,
    /// Delete every key starting with this, as a resumable job (not empty: --all is that)
    #[arg(long, conflicts_with_all = ["keys", "keys_from", "all"])]
    prefix: Option<String>,
    /// Delete every key of the store, as a resumable job
    #[arg(long, conflicts_with_all = ["keys", "keys_from"])]
    all: bool,
    /// Delete the keys of this JSON list (- for stdin): an array of names, or of objects with
    /// a "name" (or "key"), as `list --json` prints them
    #[arg(long, value_name = "FILE", conflicts_with = "keys")]
    keys_from: Option<String>,
    #[command(flatten)]
    job: JobArgs,
}

/// What an import and an export take.
#[derive(Args, Debug, Clone)]
struct FileJobArgs {
    /// Only keys starting with this
    #[arg(long, default_value = "")]
    prefix: String,
    /// The file's format (by default from its name; - is Fastly's lines)
    #[arg(long, value_enum)]
    format: Option<FileFormat>,
    #[command(flatten)]
    job: JobArgs,
}

/// What every whole-store job takes.
#[derive(Args, Debug, Clone)]
struct JobArgs {
    /// Chunks (listing pages of up to 1,000 keys) in flight at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Where the job keeps what it has done, to resume after a kill (default: a file named
    /// after the job in the state directory: see Journals below)
    #[arg(long, value_name = "PATH")]
    journal: Option<PathBuf>,
    /// Start over: forget what an interrupted run of this job had done
    #[arg(long)]
    restart: bool,
    /// Change nothing; say what would be done
    #[arg(long)]
    dry_run: bool,
    /// Refuse before writing a job the providers' budgets would make longer than this
    #[arg(long, value_name = "SECONDS")]
    max_duration: Option<u64>,
    /// How many keys the source holds, for the ETA (and --max-duration without a count)
    #[arg(long, value_name = "N")]
    expected_keys: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum StoresCommand {
    /// List the namespaces (cf) or stores (fastly): address and name, one a line
    List {
        /// Which provider's
        provider: ProviderName,
    },
    /// Create a namespace (cf) or store (fastly); prints its address
    Create {
        /// Which provider's
        provider: ProviderName,
        /// Its title or name
        name: String,
    },
    /// Rename a namespace or store
    Rename {
        /// The store: cf:<namespace> or fastly:<store>
        store: String,
        /// Its new title or name
        name: String,
    },
    /// Delete a namespace or store (a Fastly store must be empty unless --with-contents)
    Delete {
        /// The store: cf:<namespace> or fastly:<store>
        store: String,
        /// Delete a Fastly store's keys first
        #[arg(long)]
        with_contents: bool,
    },
}

/// A provider, as addresses name it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ProviderName {
    /// Cloudflare Workers KV
    Cf,
    /// Fastly KV Store
    Fastly,
}

/// A file format of import and export.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FileFormat {
    /// Cloudflare's bulk JSON, as `wrangler kv bulk put` reads it
    Json,
    /// Fastly's batch lines, as the Fastly CLI's --file reads them
    Ndjson,
    /// A directory of one file per key, with a .meta file beside each
    Dir,
}

#[derive(Args, Debug)]
struct EmulatorArgs {
    /// The port on 127.0.0.1 (0: any free port)
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Keep the stores in a log in this directory, across restarts
    #[arg(long, value_name = "DIR")]
    persist: Option<PathBuf>,
    /// Answer every request this much later
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Answer this share of requests 429 (0 to 1)
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    rate_limited: f64,
    /// The wait a 429 asks for, in milliseconds
    #[arg(long, value_name = "MS")]
    retry_after_ms: Option<u64>,
    /// Answer this share of requests 503 (0 to 1)
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    server_errors: f64,
    /// Seed of the injected faults
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cloudflare's request budget, N requests per SECONDS (as Cloudflare counts: every one)
    #[arg(long, value_name = "N/SECONDS")]
    cloudflare_budget: Option<String>,
    /// Fastly's request budget, N requests per SECONDS (as Fastly counts: all but reads)
    #[arg(long, value_name = "N/SECONDS")]
    fastly_budget: Option<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("edgekv: cannot start: {error}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(commands::run(cli));
    // Requests still in flight after an interruption are dropped, not awaited.
    runtime.shutdown_background();
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every subcommand and argument says what it is for in `--help`.
    /// The subcommands and arguments of `command`, at any depth, that say nothing in `--help`.
    fn without_help(command: &clap::Command, path: &str) -> Vec<String> {
        let mut missing = Vec::new();
        for argument in command.get_arguments() {
            let id = argument.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if argument.get_help().is_none() && argument.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(path.clone());
            }
            missing.extend(without_help(sub, &path));
        }
        missing
    }

    #[test]
    fn every_subcommand_and_argument_has_help() {
        let command = Cli::command();
        command.clone().debug_assert();
        let missing = without_help(&command, "edgekv");
        assert!(missing.is_empty(), "without help: {missing:?}");
        assert!(
            command.get_subcommands().count() >= 11,
            "the walk sees the tree"
        );
    }

    /// The walk finds what lacks help, at any depth.
    #[test]
    fn the_help_walk_finds_what_lacks_help() {
        let bare = clap::Command::new("t")
            .arg(clap::Arg::new("top").help("said"))
            .subcommand(
                clap::Command::new("s")
                    .about("said")
                    .subcommand(clap::Command::new("deep").arg(clap::Arg::new("a"))),
            );
        assert_eq!(without_help(&bare, "t"), ["t s deep", "t s deep a"]);
    }
}
