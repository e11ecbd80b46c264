//! README.md is read in three places that resolve a relative link differently: crates.io (against
//! no repository at all), docs.rs (it is the crate's root documentation, where a relative link is
//! resolved against the rustdoc page) and a checkout. Only an absolute link, or one within the
//! page, means the same in all three, so the README has no other kind.

use std::path::PathBuf;

/// Where a Markdown link or image may point: another site, an address, or a heading of the
/// same page.
const ALLOWED: [&str; 4] = ["http://", "https://", "#", "mailto:"];

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(path).unwrap()
}

/// The targets of every inline link or image (`[text](target)`, `![alt](target)`) and every
/// reference definition (`[label]: target`) outside fenced code blocks, with their line
/// numbers.
fn link_targets(markdown: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let target = &line[at + 2..];
            let end = target.find([')', ' ']).unwrap_or(target.len());
            targets.push((number, unbracket(&target[..end])));
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find("]:")
            && !trimmed[..close].contains("](")
        {
            let target = trimmed[close + 2..].split_whitespace().next().unwrap_or("");
            targets.push((number, unbracket(target)));
        }
    }
    targets
}

/// A target written `<like this>` is the same target.
fn unbracket(target: &str) -> String {
    target
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

fn relative_links(markdown: &str) -> Vec<String> {
    link_targets(markdown)
        .into_iter()
        .filter(|(_, target)| !ALLOWED.iter().any(|prefix| target.starts_with(prefix)))
        .map(|(line, target)| format!("README.md:{line}: `{target}`"))
        .collect()
}

#[test]
fn readme_has_no_relative_link() {
    let relative = relative_links(&readme());
    assert!(
        relative.is_empty(),
        "relative links break on crates.io and docs.rs; link to docs.rs or the repository, \
         or name the file in plain text:\n{}",
        relative.join("\n")
    );
}

#[test]
fn the_check_sees_every_kind_of_relative_link() {
    let planted = "\
See [the policy](src/policy.rs), ![a plot](plot.png) and [BENCHMARKS.md](<BENCHMARKS.md>).
[spec]: specs/README.md
Fine: [docs](https://docs.rs/edgekv), [up](#the-emulator), [mail](mailto:a@b.c), [old](http://x).
```rust
let linked = v[0](1); // code, not a link
```
";
    assert_eq!(
        relative_links(planted),
        [
            "README.md:1: `src/policy.rs`",
            "README.md:1: `plot.png`",
            "README.md:1: `BENCHMARKS.md`",
            "README.md:2: `specs/README.md`",
        ]
    );
}

#[test]
fn the_readme_shows_the_test_dependency_line_ci_checks() {
    // `.ci/run` builds a dependent from this very line and fails if its `cargo tree` holds a
    // code generator.
    let line = r#"edgekv = { version = "0.2", default-features = false, features = ["rustls", "emulator"] }"#;
    assert!(
        readme().lines().any(|l| l == line),
        "README.md lacks {line}"
    );
}
