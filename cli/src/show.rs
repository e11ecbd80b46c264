//! What the command tells the operator on stderr: a progress bar on a terminal (cleared when
//! the job ends), plain lines otherwise (with `-v`) and never an escape code, the final
//! report; and its JSON on stdout with `--json`.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgekv::transfer::Progress;

/// How the operator asked to be told.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Show {
    pub(crate) quiet: bool,
    pub(crate) verbose: bool,
    pub(crate) json: bool,
    /// stderr is a terminal: bars may be drawn.
    pub(crate) terminal: bool,
}

impl Show {
    pub(crate) fn new(quiet: bool, verbose: bool, json: bool) -> Show {
        Show {
            quiet,
            verbose,
            json,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Status on stderr, unless quiet; each line made [`printable`], as it may hold a key or
    /// a server's words.
    pub(crate) fn say(&self, text: &str) {
        if !self.quiet {
            let lines: Vec<String> = text.lines().map(printable).collect();
            eprintln!("{}", lines.join("\n"));
        }
    }

    /// The progress of a job that `verb`s keys (`copied`, `deleted`…), `expected` of them if
    /// known (for the ETA).
    pub(crate) fn progress(&self, verb: &'static str, expected: Option<u64>) -> Bar {
        let bar = (self.terminal && !self.quiet).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                expected,
                indicatif::ProgressDrawTarget::stderr(),
            );
            let template = match expected {
                Some(_) => "{spinner} [{bar:30}] {msg}",
                None => "{spinner} {msg}",
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("{verb}: starting"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Bar {
            bar,
            plain: !self.terminal && self.verbose && !self.quiet,
            verb,
            expected,
            last: Arc::new(Mutex::new(None)),
        }
    }
}

/// A job's progress as drawn.
pub(crate) struct Bar {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    verb: &'static str,
    expected: Option<u64>,
    last: Arc<Mutex<Option<Progress>>>,
}

impl Bar {
    /// What the job calls after each chunk.
    pub(crate) fn callback(&self) -> impl Fn(&Progress) + Send + Sync + 'static {
        let (bar, plain, verb, expected) = (self.bar.clone(), self.plain, self.verb, self.expected);
        let last = self.last.clone();
        move |progress: &Progress| {
            let line = line(verb, progress, expected);
            if let Some(bar) = &bar {
                bar.set_position(progress.listed);
                bar.set_message(line);
            } else if plain {
                eprintln!("{line}");
            }
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(progress.clone());
        }
    }

    /// Clears the bar: what stays on the terminal is the final report.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One progress line: keys and bytes done, failures, rate, ETA, and the time spent waiting for
/// a provider's budget.
fn line(verb: &str, progress: &Progress, expected: Option<u64>) -> String {
    let mut line = format!(
        "{verb} {} of {} keys listed ({}), {} failed, {:.0} keys/s",
        progress.copied,
        progress.listed,
        bytes(progress.bytes),
        progress.failed,
        progress.keys_per_second()
    );
    if let Some(eta) = expected.and_then(|e| progress.eta(e)) {
        line.push_str(&format!(", ETA {}", clock(eta)));
    }
    if progress.budget_wait >= Duration::from_millis(100) {
        line.push_str(&format!(
            ", waited {} for the budget",
            clock(progress.budget_wait)
        ));
    }
    line
}

/// `n` bytes, in the largest unit that keeps a digit before the point.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// A duration as `h:mm:ss` or `m:ss`.
pub(crate) fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match hours {
        0 => format!("{minutes}:{seconds:02}"),
        _ => format!("{hours}:{minutes:02}:{seconds:02}"),
    }
}

/// Text from a store (a key, a reason) made safe for a terminal: control characters, escape
/// among them, written as escapes, so a hostile key cannot move the cursor or recolour it.
pub(crate) fn printable(text: &str) -> String {
    // Control characters, and the marks that reorder text on screen (bidirectional overrides
    // and isolates), which could make one key look like another.
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text.to_string();
    }
    text.chars()
        .flat_map(|c| match unsafe_char(c) {
            true => c.escape_unicode().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_clock_and_escapes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(clock(Duration::from_secs(75)), "1:15");
        assert_eq!(clock(Duration::from_secs(3_725)), "1:02:05");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
        assert_eq!(printable("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(printable("plain/key"), "plain/key");
    }
}
