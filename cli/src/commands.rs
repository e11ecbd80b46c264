//! The commands: each reads its arguments, calls the library, and says what came of it.

use std::hash::Hasher as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use edgekv::kv::{Expiry, Metadata, MetadataKind, Write};
use edgekv::transfer::{CopyReport, JobOptions};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

use crate::place::{Failure, Handle, Place, Reach, Store, chain};
use crate::show::{Bar, Show, bytes, clock, printable};
use crate::{Cli, Command, DeleteArgs, EmulatorArgs, FileJobArgs, JobArgs, ProviderName, PutArgs};
use crate::{StoresCommand, exit};

/// Runs the command line's command: the exit code.
pub(crate) async fn run(cli: Cli) -> u8 {
    let show = Show::new(cli.quiet, cli.verbose, cli.json);
    // `--emulator URL` (a space, not `=`) would aim at the default address and take the URL
    // for a key or a value.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.windows(2).any(|pair| {
        pair[0] == "--emulator"
            && (pair[1].starts_with("http://") || pair[1].starts_with("https://"))
    }) {
        eprintln!("edgekv: write --emulator=URL (with =): a URL after a space is an argument");
        return exit::USAGE;
    }
    let reach = Reach {
        emulator: cli.emulator.filter(|url| !url.is_empty()),
        account: cli.account,
    };
    match command(cli.command, &reach, show).await {
        Ok(code) => code,
        Err(failure) => {
            // The message may hold a key or a server's words: each of its lines is made safe
            // for a terminal.
            let lines: Vec<String> = failure.message.lines().map(printable).collect();
            eprintln!("edgekv: {}", lines.join("\n"));
            failure.code
        }
    }
}

async fn command(command: Command, reach: &Reach, show: Show) -> Result<u8, Failure> {
    match command {
        Command::Get { store, key } => get(reach, show, &store, &key).await,
        Command::Put(args) => put(reach, show, args).await,
        Command::Delete(args) => delete(reach, show, args).await,
        Command::List { store, prefix } => list(reach, show, &store, &prefix).await,
        Command::Stores(command) => stores(reach, show, command).await,
        Command::Copy {
            src,
            dst,
            prefix,
            job,
        } => {
            let src = reach.place(&src, None, true).await?;
            let dst = reach.place(&dst, None, false).await?;
            transfer(show, src, dst, &prefix, &job).await
        }
        Command::Import {
            file,
            dst,
            file_job:
                FileJobArgs {
                    prefix,
                    format,
                    job,
                },
        } => {
            let src = reach.place(&file, format, true).await?;
            let dst = reach.store(&dst).await?;
            if matches!(src, Place::Store(_)) {
                return Err(Failure::usage(
                    "import reads a file: to copy between stores, use copy",
                ));
            }
            transfer(show, src, Place::Store(dst), &prefix, &job).await
        }
        Command::Export {
            src,
            file,
            file_job:
                FileJobArgs {
                    prefix,
                    format,
                    job,
                },
        } => {
            let src = reach.store(&src).await?;
            let dst = reach.place(&file, format, false).await?;
            if matches!(dst, Place::Store(_)) {
                return Err(Failure::usage(
                    "export writes a file: to copy between stores, use copy",
                ));
            }
            transfer(show, Place::Store(src), dst, &prefix, &job).await
        }
        Command::Sync {
            src,
            dst,
            prefix,
            delete,
            max_delete_percent,
            job,
        } => {
            let src = reach.store(&src).await?;
            let dst = reach.store(&dst).await?;
            sync(show, src, dst, &prefix, delete, max_delete_percent, &job).await
        }
        Command::Verify { src, dst, prefix } => {
            let src = reach.store(&src).await?;
            let dst = reach.store(&dst).await?;
            verify(show, src, dst, &prefix).await
        }
        Command::Emulator(args) => emulator(args).await,
    }
}

async fn get(reach: &Reach, show: Show, address: &str, key: &str) -> Result<u8, Failure> {
    let store = reach.store(address).await?;
    let found = store.kv.get(key).await;
    let Some(entry) = found.map_err(|e| Failure::of(&store.address, &e))? else {
        show.say(&format!(
            "{}: no key {}",
            store.address,
            printable(&format!("{key:?}"))
        ));
        return Ok(exit::SOME_FAILED);
    };
    let mut value = entry.value;
    if show.json {
        // Whole, within the client's read limits: a value no store could hold is refused.
        let bytes = value.bytes().await;
        let bytes = bytes.map_err(|e| Failure::of(&store.address, &e))?.to_vec();
        let mut out = json!({ "key": key });
        match String::from_utf8(bytes) {
            Ok(text) => out["value"] = json!(text),
            Err(e) => {
                out["value"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()));
                out["base64"] = json!(true);
            }
        }
        if let Some(metadata) = entry.metadata {
            out["metadata"] = metadata_json(metadata);
        }
        if let Some(at) = entry.expires_at {
            out["expiration"] = json!(at);
        }
        if let Some(version) = entry.version {
            out["version"] = json!(version);
        }
        return print_json(&out);
    }
    // The value as it streams in: a 25 MiB value is never held whole.
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = value.next().await {
        let chunk = chunk.map_err(|e| Failure::of(&store.address, &e))?;
        if let Err(e) = stdout.write_all(&chunk) {
            return written(e);
        }
    }
    match stdout.flush() {
        Ok(()) => Ok(exit::OK),
        Err(e) => written(e),
    }
}

async fn put(reach: &Reach, show: Show, args: PutArgs) -> Result<u8, Failure> {
    let store = reach.store(&args.store).await?;
    let capabilities = store.kv.capabilities().clone();
    let value: edgekv::Body = match (args.value, &args.file) {
        (Some(value), _) => value.into(),
        (None, Some(path)) => edgekv::Body::from_path(path)
            .await
            .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))?,
        (None, None) => {
            // Read whole (up to the store's limit), so a failed attempt can be sent again.
            use tokio::io::AsyncReadExt as _;
            let mut value = Vec::new();
            let limit = capabilities.max_value_bytes.saturating_add(1);
            tokio::io::stdin()
                .take(limit)
                .read_to_end(&mut value)
                .await
                .map_err(|e| Failure::failed(format!("stdin: {e}")))?;
            if value.len() as u64 > capabilities.max_value_bytes {
                return Err(Failure::usage(format!(
                    "the value on stdin is over {}'s limit of {} bytes",
                    store.address, capabilities.max_value_bytes
                )));
            }
            value.into()
        }
    };
    let mut write = Write::new();
    if let Some(text) = args.metadata {
        let metadata = match capabilities.metadata {
            MetadataKind::Json => Metadata::Json(serde_json::from_str(&text).map_err(|e| {
                Failure::usage(format!(
                    "--metadata: a Cloudflare namespace keeps JSON metadata, and this is not \
                     JSON ({e}); quote a string as '\"text\"'"
                ))
            })?),
            _ => Metadata::Text(text),
        };
        write = write.metadata(metadata);
    }
    if let Some(seconds) = args.ttl {
        write = write.expiry(Expiry::After(Duration::from_secs(seconds)));
    }
    if let Some(at) = args.expiration {
        write = write.expiry(Expiry::At(at));
    }
    if args.if_absent {
        write = write.if_absent();
    }
    if let Some(version) = args.if_version {
        write = write.if_version(version);
    }
    match store.kv.put(&args.key, value, write).await {
        Ok(()) => Ok(exit::OK),
        Err(e) if e.is_precondition_failed() => {
            show.say(&format!(
                "{}: not written: its condition did not hold ({})",
                store.address,
                printable(&chain(&e))
            ));
            Ok(exit::SOME_FAILED)
        }
        Err(e) => Err(Failure::of(&store.address, &e)),
    }
}

async fn delete(reach: &Reach, show: Show, args: DeleteArgs) -> Result<u8, Failure> {
    let store = reach.store(&args.store).await?;
    match (&args.prefix, args.all) {
        (Some(prefix), _) if prefix.is_empty() => {
            return Err(Failure::usage(
                "--prefix is empty, which is every key: say --all to delete them all",
            ));
        }
        (Some(prefix), _) => return delete_prefix(show, store, prefix, &args.job).await,
        (None, true) => return delete_prefix(show, store, "", &args.job).await,
        (None, false) => {}
    }
    let keys = match &args.keys_from {
        Some(from) => keys_from(from).await?,
        None => args.keys,
    };
    if keys.is_empty() && args.keys_from.is_none() {
        return Err(Failure::usage(
            "name the keys to delete, or give --prefix, --all or --keys-from",
        ));
    }
    let stream = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
    let concurrency = args.job.concurrency;
    let deleting = store.kv.bulk_delete(stream, concurrency);
    let report = deleting
        .await
        .map_err(|e| Failure::of(&store.address, &e))?;
    if show.json {
        print_json(&json!({
            "deleted": report.deleted,
            "failed": failed_json(&report.failed),
        }))?;
    } else {
        show.say(&format!(
            "deleted {} keys from {}",
            report.deleted, store.address
        ));
        say_failed(show, &report.failed);
    }
    Ok(done_unless(report.failed.len()))
}

/// The keys of a JSON list (`-`: stdin): an array of names (wrangler's bulk delete input), or
/// of objects with a `name` (what `list --json` and wrangler's `kv key list` print) or `key`.
async fn keys_from(from: &str) -> Result<Vec<String>, Failure> {
    // A list of a million 1 KiB keys is about 1 GiB: more is not a list of keys.
    const MOST: u64 = 1 << 30;
    use tokio::io::AsyncReadExt as _;
    let mut text = Vec::new();
    let read = match from {
        "-" => {
            tokio::io::stdin()
                .take(MOST + 1)
                .read_to_end(&mut text)
                .await
        }
        path => match tokio::fs::File::open(path).await {
            Ok(file) => file.take(MOST + 1).read_to_end(&mut text).await,
            Err(e) => Err(e),
        },
    };
    read.map_err(|e| Failure::failed(format!("{from}: {e}")))?;
    if text.len() as u64 > MOST {
        return Err(Failure::usage(format!(
            "{from}: over {MOST} bytes, more than a list of keys: delete by --prefix instead"
        )));
    }
    let list: Vec<serde_json::Value> = serde_json::from_slice(&text)
        .map_err(|e| Failure::usage(format!("{from}: not a JSON array of keys ({e})")))?;
    list.into_iter()
        .enumerate()
        .map(|(n, item)| match item {
            serde_json::Value::String(key) => Ok(key),
            serde_json::Value::Object(mut object) => {
                match object.remove("name").or_else(|| object.remove("key")) {
                    Some(serde_json::Value::String(key)) => Ok(key),
                    _ => Err(Failure::usage(format!(
                        "{from}: element {n} has no \"name\" (or \"key\") string"
                    ))),
                }
            }
            _ => Err(Failure::usage(format!(
                "{from}: element {n} is neither a key nor an object with a \"name\""
            ))),
        })
        .collect()
}

async fn list(reach: &Reach, show: Show, address: &str, prefix: &str) -> Result<u8, Failure> {
    let store = reach.store(address).await?;
    let mut pages = store.kv.list(prefix, None);
    let mut first = true;
    if show.json {
        print_raw(b"[")?;
    }
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Failure::of(&store.address, &e))?;
        let mut out = Vec::new();
        for listed in page.keys {
            if show.json {
                let mut item = json!({ "name": listed.key });
                if let Some(at) = listed.expires_at {
                    item["expiration"] = json!(at);
                }
                if let Some(metadata) = listed.metadata {
                    item["metadata"] = metadata_json(metadata);
                }
                out.extend_from_slice(if first { b"\n" } else { b",\n" });
                out.extend_from_slice(item.to_string().as_bytes());
            } else {
                out.extend_from_slice(printable(&listed.key).as_bytes());
                out.push(b'\n');
            }
            first = false;
        }
        if !print_raw(&out)? {
            return Ok(exit::OK);
        }
    }
    if show.json {
        print_raw(b"\n]\n")?;
    }
    Ok(exit::OK)
}

async fn stores(reach: &Reach, show: Show, command: StoresCommand) -> Result<u8, Failure> {
    match command {
        StoresCommand::List { provider } => {
            let listed: Vec<(String, String)> = match provider {
                ProviderName::Cf => {
                    let client = reach.cloudflare()?;
                    let all = client.namespaces(None).try_collect::<Vec<_>>().await;
                    let all = all.map_err(|e| Failure::of("Cloudflare namespaces", &e))?;
                    all.into_iter()
                        .map(|n| (format!("cf:{}", n.id), n.title))
                        .collect()
                }
                ProviderName::Fastly => {
                    let client = reach.fastly()?;
                    let all = client.stores(Default::default()).try_collect::<Vec<_>>();
                    let all = all.await.map_err(|e| Failure::of("Fastly stores", &e))?;
                    all.into_iter()
                        .map(|s| (format!("fastly:{}", s.id), s.name))
                        .collect()
                }
            };
            if show.json {
                let all: Vec<_> = listed
                    .iter()
                    .map(|(address, name)| json!({ "address": address, "name": name }))
                    .collect();
                return print_json(&json!(all));
            }
            let mut out = String::new();
            for (address, name) in listed {
                let (address, name) = (printable(&address), printable(&name));
                out.push_str(&format!("{address}\t{name}\n"));
            }
            print_raw(out.as_bytes())?;
            Ok(exit::OK)
        }
        StoresCommand::Create { provider, name } => {
            let address = match provider {
                ProviderName::Cf => {
                    let client = reach.cloudflare()?;
                    let created = client.create_namespace(&name).await;
                    let created = created.map_err(|e| Failure::of("Cloudflare", &e))?;
                    let id = crate::place::checked_id(created.into_inner().id, "Cloudflare")?;
                    format!("cf:{id}")
                }
                ProviderName::Fastly => {
                    let client = reach.fastly()?;
                    let created = client.create_store(&name, None).await;
                    let created = created.map_err(|e| Failure::of("Fastly", &e))?;
                    format!("fastly:{}", crate::place::checked_id(created.id, "Fastly")?)
                }
            };
            match show.json {
                true => print_json(&json!({ "address": address, "name": name })),
                false => {
                    print_raw(format!("{address}\n").as_bytes())?;
                    Ok(exit::OK)
                }
            }
        }
        StoresCommand::Rename { store, name } => {
            let store = reach.store(&store).await?;
            let renamed = match &store.handle {
                Handle::Cloudflare(client, id) => {
                    client.rename_namespace(id, &name).await.map(|_| ())
                }
                Handle::Fastly(client, id) => client.rename_store(id, &name).await,
            };
            renamed.map_err(|e| Failure::of(&store.address, &e))?;
            show.say(&format!(
                "renamed {} to {}",
                store.address,
                printable(&name)
            ));
            Ok(exit::OK)
        }
        StoresCommand::Delete {
            store,
            with_contents,
        } => {
            let store = reach.store(&store).await?;
            let deleted = match &store.handle {
                Handle::Cloudflare(client, id) => client.delete_namespace(id).await.map(|_| ()),
                Handle::Fastly(client, id) if with_contents => client
                    .delete_store_with_contents(id, &Default::default())
                    .await
                    .map(|_| ()),
                Handle::Fastly(client, id) => client.delete_store(id).await,
            };
            deleted.map_err(|e| Failure::of(&store.address, &e))?;
            show.say(&format!("deleted {}", store.address));
            Ok(exit::OK)
        }
    }
}

/// The options of a job between `src` and `dst` (names as [`Place::name`] gives them).
fn options(job: &JobArgs, prefix: &str, journal: Option<PathBuf>, bar: &Bar) -> JobOptions {
    let mut options = JobOptions::new()
        .prefix(prefix)
        .concurrency(job.concurrency)
        .dry_run(job.dry_run)
        .progress(bar.callback());
    if let Some(journal) = journal {
        options = options.journal(journal);
    }
    if let Some(seconds) = job.max_duration {
        options = options.max_duration(Duration::from_secs(seconds));
    }
    if let Some(keys) = job.expected_keys {
        options = options.expected_keys(keys);
    }
    options
}

/// Where a job keeps its journal: `--journal`, or a file in the state directory named after
/// the job (its kind, both sides, prefix), so running the same command again finds it. None
/// for a dry run, or a job on stdin or stdout (a stream cannot be resumed).
fn journal_for(
    show: Show,
    job: &JobArgs,
    kind: &str,
    sides: &[&Place],
    prefix: &str,
) -> Option<PathBuf> {
    let journal = journal_path(job, kind, sides, prefix)?;
    if job.restart {
        let _ = std::fs::remove_file(&journal);
    } else if journal.exists() {
        show.say(&format!(
            "resuming from the journal {} (--restart starts over)",
            journal.display()
        ));
    }
    Some(journal)
}

fn journal_path(job: &JobArgs, kind: &str, sides: &[&Place], prefix: &str) -> Option<PathBuf> {
    if job.dry_run {
        return None;
    }
    if let Some(path) = &job.journal {
        return Some(path.clone());
    }
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(kind.as_bytes());
    for side in sides {
        let name = match side {
            Place::File { path, .. } if path.starts_with("/dev/") => return None,
            Place::File { path, format } => {
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("{}:{format:?}", path.display())
            }
            Place::Store(store) => store.address.clone(),
        };
        hasher.write(&[0]);
        hasher.write(name.as_bytes());
    }
    hasher.write(&[0]);
    hasher.write(prefix.as_bytes());
    let dir = state_dir().join("jobs");
    Some(dir.join(format!("{kind}-{:016x}.journal", hasher.finish())))
}

/// `EDGEKV_STATE_DIR`, else `$XDG_STATE_HOME/edgekv`, else `~/.local/state/edgekv`, else
/// `.edgekv` here.
fn state_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("EDGEKV_STATE_DIR") {
        return dir.into();
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("edgekv");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/edgekv"),
        None => PathBuf::from(".edgekv"),
    }
}

/// Runs `job` until it ends or the operator interrupts it (SIGINT or SIGTERM). Interrupted, the
/// job is dropped: chunks in flight, and those waiting for a budget, are cancelled, not awaited
/// (Fastly's window is an hour); the journal already holds every chunk done.
async fn interruptible<T>(
    bar: &Bar,
    what: &str,
    journal: Option<&Path>,
    job: impl Future<Output = Result<T, edgekv::Error>>,
) -> Result<T, Failure> {
    let outcome = tokio::select! {
        outcome = job => Some(outcome),
        () = stop_signal() => None,
    };
    bar.finish();
    let resume = || {
        // The same command, but never one that starts over.
        let command: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .filter(|a| a != "--restart")
            .map(|a| shell_quoted(&a))
            .collect();
        format!("run it again to resume:\n  {}", command.join(" "))
    };
    match outcome {
        None => Err(Failure {
            code: exit::INTERRUPTED,
            message: match journal {
                Some(journal) => format!(
                    "interrupted: what is done is in the journal {}; {}",
                    journal.display(),
                    resume()
                ),
                None => "interrupted (the job had no journal: it starts over)".into(),
            },
        }),
        Some(Ok(done)) => {
            // Done: the same command later is a new job, not a resumed one.
            if let Some(journal) = journal {
                let _ = std::fs::remove_file(journal);
            }
            Ok(done)
        }
        Some(Err(error)) => {
            let mut failure = Failure::of(what, &error);
            if let Some(journal) = journal.filter(|j| j.exists()) {
                failure.message.push_str(&format!(
                    "\nwhat is done is in the journal {}; {}",
                    journal.display(),
                    resume()
                ));
            }
            Err(failure)
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `arg` as a POSIX shell reads it back.
fn shell_quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A copy between two places: stores (a copy), a file to a store (an import) or a store to a
/// file (an export).
async fn transfer(
    show: Show,
    src: Place,
    dst: Place,
    prefix: &str,
    job: &JobArgs,
) -> Result<u8, Failure> {
    let (kind, verb) = match (&src, &dst) {
        (Place::Store(_), Place::Store(_)) => ("copy", "copied"),
        (Place::File { .. }, Place::Store(_)) => ("import", "imported"),
        (Place::Store(_), Place::File { .. }) => ("export", "exported"),
        (Place::File { .. }, Place::File { .. }) => {
            return Err(Failure::usage(
                "both sides are files: one of SRC and DST must be a store (cf:… or fastly:…)",
            ));
        }
    };
    let journal = journal_for(show, job, kind, &[&src, &dst], prefix);
    let bar = show.progress(verb, job.expected_keys);
    let options = options(job, prefix, journal.clone(), &bar);
    let what = format!("{} → {}", src.name(), dst.name());
    let started = Instant::now();
    let report = match (&src, &dst) {
        (Place::Store(from), Place::Store(to)) => {
            let copy = edgekv::transfer::copy(from.kv.as_ref(), to.kv.as_ref(), &options);
            interruptible(&bar, &what, journal.as_deref(), copy).await?
        }
        (Place::File { path, format }, Place::Store(to)) => {
            let import = edgekv::transfer::import(path, *format, to.kv.as_ref(), &options);
            interruptible(&bar, &what, journal.as_deref(), import).await?
        }
        (Place::Store(from), Place::File { path, format }) => {
            let export = edgekv::transfer::export(from.kv.as_ref(), path, *format, &options);
            interruptible(&bar, &what, journal.as_deref(), export).await?
        }
        (Place::File { .. }, Place::File { .. }) => unreachable!("refused above"),
    };
    let code = say_copy(show, verb, &what, &report, started.elapsed(), job.dry_run)?;
    if let Place::Store(from) = &src {
        say_lost_expiry(show, from, report.copied);
    }
    Ok(code)
}

/// Says, after a copy of `copied` keys from `source`, that Fastly's expiry did not come along.
fn say_lost_expiry(show: Show, source: &Store, copied: u64) {
    if matches!(source.handle, Handle::Fastly(..)) && copied > 0 {
        show.say("(Fastly's reads give no expiry: what was copied from it does not expire)");
    }
}

/// The final report of a copy, import or export.
fn say_copy(
    show: Show,
    verb: &str,
    what: &str,
    report: &CopyReport,
    took: Duration,
    dry_run: bool,
) -> Result<u8, Failure> {
    let code = done_unless(report.failed.len());
    if show.json {
        print_json(&json!({
            "dry_run": dry_run,
            "listed": report.listed,
            "copied": report.copied,
            "skipped": report.skipped,
            "bytes": report.bytes,
            "failed": failed_json(&report.failed),
            "source_requests": report.source_requests,
            "destination_requests": report.destination_requests,
            "resumed_chunks": report.resumed_chunks,
            "budget_wait_ms": report.budget_wait.as_millis() as u64,
            "seconds": took.as_secs_f64(),
        }))?;
        return Ok(code);
    }
    if dry_run {
        show.say(&format!(
            "{what}: would be {verb}: {} keys listed, {} of them not writable",
            report.listed,
            report.failed.len()
        ));
    } else {
        let mut line = format!(
            "{what}: {verb} {} of {} keys ({}) in {}; {} skipped, {} failed; {} requests to \
             the source, {} to the destination",
            report.copied,
            report.listed,
            bytes(report.bytes),
            clock(took),
            report.skipped,
            report.failed.len(),
            report.source_requests,
            report.destination_requests
        );
        if report.resumed_chunks > 0 {
            line.push_str(&format!(
                "; {} chunks were done by a run before",
                report.resumed_chunks
            ));
        }
        show.say(&line);
    }
    say_failed(show, &report.failed);
    Ok(code)
}

async fn delete_prefix(
    show: Show,
    store: Store,
    prefix: &str,
    job: &JobArgs,
) -> Result<u8, Failure> {
    let place = Place::Store(store);
    let journal = journal_for(show, job, "delete", &[&place], prefix);
    let Place::Store(store) = place else {
        unreachable!("made a store above")
    };
    let bar = show.progress("deleted", job.expected_keys);
    let options = options(job, prefix, journal.clone(), &bar);
    let deleting = edgekv::transfer::delete_prefix(store.kv.as_ref(), &options);
    let report = interruptible(&bar, &store.address, journal.as_deref(), deleting).await?;
    let code = done_unless(report.failed.len());
    if show.json {
        print_json(&json!({
            "dry_run": job.dry_run,
            "listed": report.listed,
            "deleted": report.deleted,
            "to_delete": report.to_delete_keys,
            "failed": failed_json(&report.failed),
            "requests": report.requests,
        }))?;
        return Ok(code);
    }
    if job.dry_run {
        show.say(&format!(
            "{}: would delete {} keys under {}",
            store.address,
            report.listed,
            printable(&format!("{prefix:?}"))
        ));
        for key in report.to_delete_keys.iter().take(20) {
            show.say(&format!("  {}", printable(key)));
        }
    } else {
        show.say(&format!(
            "{}: deleted {} of {} keys under {}, {} failed",
            store.address,
            report.deleted,
            report.listed,
            printable(&format!("{prefix:?}")),
            report.failed.len()
        ));
    }
    say_failed(show, &report.failed);
    Ok(code)
}

async fn sync(
    show: Show,
    src: Store,
    dst: Store,
    prefix: &str,
    delete: bool,
    max_delete_percent: u32,
    job: &JobArgs,
) -> Result<u8, Failure> {
    let what = format!("{} → {}", src.address, dst.address);
    if !delete {
        // Without --delete a sync is a copy: the destination's other keys stay.
        let code = transfer(show, Place::Store(src), Place::Store(dst), prefix, job).await?;
        show.say("(without --delete, keys the destination has and the source lacks are kept)");
        return Ok(code);
    }
    let (src, dst) = (Place::Store(src), Place::Store(dst));
    let journal = journal_for(show, job, "sync", &[&src, &dst], prefix);
    let (Place::Store(src), Place::Store(dst)) = (src, dst) else {
        unreachable!("made stores above")
    };
    let bar = show.progress("copied", job.expected_keys);
    let options =
        options(job, prefix, journal.clone(), &bar).max_delete_percent(max_delete_percent);
    let started = Instant::now();
    let syncing = edgekv::transfer::sync(src.kv.as_ref(), dst.kv.as_ref(), &options);
    let report = interruptible(&bar, &what, journal.as_deref(), syncing).await?;
    let failed = report.copy.failed.len() + report.failed_deletes.len();
    let code = done_unless(failed);
    if show.json {
        print_json(&json!({
            "dry_run": job.dry_run,
            "to_copy": report.to_copy,
            "to_delete": report.to_delete,
            "to_delete_keys": report.to_delete_keys,
            "copied": report.copy.copied,
            "deleted": report.deleted,
            "failed": failed_json(&report.copy.failed),
            "failed_deletes": failed_json(&report.failed_deletes),
            "source_requests": report.source_requests,
            "destination_requests": report.destination_requests,
        }))?;
        return Ok(code);
    }
    if job.dry_run {
        show.say(&format!(
            "{what}: would copy {} keys and delete {}",
            report.to_copy, report.to_delete
        ));
        for key in report.to_delete_keys.iter().take(20) {
            show.say(&format!("  delete {}", printable(key)));
        }
        return Ok(code);
    }
    show.say(&format!(
        "{what}: copied {} keys, deleted {}, in {}; {} failed",
        report.copy.copied,
        report.deleted,
        clock(started.elapsed()),
        failed
    ));
    say_failed(show, &report.copy.failed);
    say_failed(show, &report.failed_deletes);
    say_lost_expiry(show, &src, report.copy.copied);
    Ok(code)
}

async fn verify(show: Show, src: Store, dst: Store, prefix: &str) -> Result<u8, Failure> {
    let what = format!("{} ↔ {}", src.address, dst.address);
    let options = JobOptions::new().prefix(prefix);
    let verifying = edgekv::transfer::verify(src.kv.as_ref(), dst.kv.as_ref(), &options);
    let bar = show.progress("compared", None);
    let report = interruptible(&bar, &what, None, verifying).await?;
    let code = if report.is_equal() {
        exit::OK
    } else {
        exit::SOME_FAILED
    };
    if show.json {
        let differences: Vec<_> = report
            .differences
            .iter()
            .map(|d| json!({ "key": d.key, "kind": format!("{:?}", d.kind) }))
            .collect();
        print_json(&json!({
            "compared": report.compared,
            "different": report.different,
            "differences": differences,
        }))?;
        return Ok(code);
    }
    show.say(&format!(
        "{what}: {} keys compared, {} different",
        report.compared, report.different
    ));
    for difference in report.differences.iter().take(20) {
        show.say(&format!(
            "  {}: {:?}",
            printable(&difference.key),
            difference.kind
        ));
    }
    Ok(code)
}

async fn emulator(args: EmulatorArgs) -> Result<u8, Failure> {
    use edgekv::emulator::{Budget, Emulator, EmulatorConfig};
    let budget = |flag: &str, text: &Option<String>| -> Result<Option<Budget>, Failure> {
        let Some(text) = text else { return Ok(None) };
        let bad = || Failure::usage(format!("{flag}: {text:?} is not N/SECONDS above 0"));
        let (requests, seconds) = text.split_once('/').ok_or_else(bad)?;
        let requests: u32 = requests.parse().map_err(|_| bad())?;
        let seconds: f64 = seconds.parse().map_err(|_| bad())?;
        let per = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
        if requests == 0 || per.is_zero() {
            return Err(bad());
        }
        Ok(Some(Budget::new(requests, per)))
    };
    for (flag, share) in [
        ("--rate-limited", args.rate_limited),
        ("--server-errors", args.server_errors),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(Failure::usage(format!(
                "{flag}: {share} is not between 0 and 1"
            )));
        }
    }
    let mut config = EmulatorConfig::default();
    config.port = args.port;
    config.persist = args.persist.clone();
    config.faults.latency = Duration::from_millis(args.latency_ms);
    config.faults.rate_limited = args.rate_limited;
    config.faults.server_errors = args.server_errors;
    config.faults.seed = args.seed;
    if let Some(ms) = args.retry_after_ms {
        config.faults.retry_after = Duration::from_millis(ms);
    }
    config.cloudflare_budget = budget("--cloudflare-budget", &args.cloudflare_budget)?;
    config.fastly_budget = budget("--fastly-budget", &args.fastly_budget)?;
    let emulator = Emulator::start(config.clone())
        .await
        .map_err(|e| Failure::failed(format!("cannot serve on 127.0.0.1:{}: {e}", args.port)))?;
    let url = emulator.fastly_url();
    let lines = format!(
        "emulator: {url}\nfastly: {}\ncloudflare: {}\ncloudflare account: {}\ntoken: {}\n\
         use it: edgekv --emulator={url} …\n",
        emulator.fastly_url(),
        emulator.cloudflare_url(),
        config.cloudflare_account,
        edgekv::emulator::DEFAULT_TOKEN
    );
    print_raw(lines.as_bytes())?;
    stop_signal().await;
    emulator.stop().await;
    Ok(exit::OK)
}

/// Metadata as JSON: Cloudflare's as it is, Fastly's text as a string.
fn metadata_json(metadata: Metadata) -> serde_json::Value {
    match metadata {
        Metadata::Json(value) => value,
        Metadata::Text(text) => json!(text),
    }
}

fn failed_json(failed: &[edgekv::FailedKey]) -> serde_json::Value {
    let all: Vec<_> = failed
        .iter()
        .map(|f| {
            let failure = match f.failure {
                edgekv::Failure::Refused => "refused",
                _ => "request_failed",
            };
            json!({ "key": f.key, "index": f.index, "reason": f.reason, "failure": failure })
        })
        .collect();
    json!(all)
}

/// The exit code of a command that did all but `failed` keys.
fn done_unless(failed: usize) -> u8 {
    match failed {
        0 => exit::OK,
        _ => exit::SOME_FAILED,
    }
}

/// The keys not done, the first 20 of them.
fn say_failed(show: Show, failed: &[edgekv::FailedKey]) {
    for f in failed.iter().take(20) {
        show.say(&format!(
            "  {}: {}",
            printable(&f.key),
            printable(&f.reason)
        ));
    }
    if failed.len() > 20 {
        show.say(&format!(
            "  … and {} more (--json lists them all)",
            failed.len() - 20
        ));
    }
}

fn print_json(value: &serde_json::Value) -> Result<u8, Failure> {
    print_raw(format!("{value}\n").as_bytes())?;
    Ok(exit::OK)
}

/// Writes to stdout: `false` if its reader went away (`| head`), which ends the command
/// quietly.
fn print_raw(bytes: &[u8]) -> Result<bool, Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::failed(format!("stdout: {e}"))),
    }
}

/// A failed write to stdout: quiet if its reader went away.
fn written(error: std::io::Error) -> Result<u8, Failure> {
    match error.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        _ => Err(Failure::failed(format!("stdout: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_as_a_shell_reads_them() {
        assert_eq!(shell_quoted("cf:0123"), "cf:0123");
        assert_eq!(shell_quoted("a b"), "'a b'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
        assert_eq!(shell_quoted(""), "''");
    }
}
