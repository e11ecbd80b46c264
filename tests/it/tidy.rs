//! Keeps ARCHITECTURE.md true to the tree: every file, folder and crate module it names in
//! backticks must exist (in the style of rust-analyzer's tidy tests). A map that names what is
//! gone misleads the next reader more than no map.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file and folder of the repository, as paths relative to its root with `/` separators.
fn tree() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                out.push(format!("{relative}/"));
                walk(&path, root, out);
            } else {
                out.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &root(), &mut out);
    out
}

/// The backticked spans of a Markdown text.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Whether a span names a file or folder: a path-like word with a known extension or a
/// trailing `/`, and no placeholder (`<spec stem>`).
fn names_a_path(span: &str) -> bool {
    let plain = !span.contains(['<', '>', ' ', '*', '[']);
    let looks_like_file = [".rs", ".md", ".yaml", ".toml", ".sh"]
        .iter()
        .any(|ext| span.ends_with(ext));
    plain && (looks_like_file || (span.ends_with('/') && span.len() > 1))
}

/// A named path exists if some file or folder's path ends with it at a component boundary:
/// the map names files relative to the section they appear in, and `_bulk.rs` stands for the
/// suite of each provider.
fn exists(tree: &[String], span: &str) -> bool {
    tree.iter().any(|path| {
        path == span
            || path.ends_with(&format!("/{span}"))
            || (span.starts_with('_') && path.ends_with(span))
    })
}

/// A crate module path such as `transport::segment::encode` or `policy::ReadLimits`: its
/// lower-case leading segments must be modules of `src/`, nested as written.
fn module_exists(tree: &[String], span: &str) -> Option<bool> {
    let span = span.strip_prefix("edgekv::").unwrap_or(span);
    let modules: Vec<&str> = span
        .split("::")
        .take_while(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    let first = modules.first()?;
    let is_module = |dir: &str, name: &str| {
        let file = format!("{dir}{name}.rs");
        let folder = format!("{dir}{name}/");
        tree.iter().any(|p| *p == file || *p == folder)
    };
    // Only spans that start at a top-level module of the crate are module paths.
    if span.split("::").count() < 2 || !is_module("src/", first) {
        return None;
    }
    let mut dir = String::from("src/");
    for (i, module) in modules.iter().enumerate() {
        if !is_module(&dir, module) {
            // The last lower-case segment may be a function (`segment::encode`): the module
            // that holds it must define or re-export it.
            return Some(i > 0 && i == modules.len() - 1 && module_defines(&dir, module));
        }
        dir = format!("{dir}{module}/");
    }
    Some(true)
}

/// Whether the module whose folder would be `dir` (`src/transport/`) defines a function or macro
/// `name`, or re-exports it with a `use`.
fn module_defines(dir: &str, name: &str) -> bool {
    let folder = dir.trim_end_matches('/');
    let text = std::fs::read_to_string(root().join(format!("{folder}.rs")))
        .or_else(|_| std::fs::read_to_string(root().join(format!("{folder}/mod.rs"))))
        .unwrap_or_default();
    let is_word = |line: &str| {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == name)
    };
    text.contains(&format!("fn {name}("))
        || text.contains(&format!("fn {name}<"))
        || text.contains(&format!("macro_rules! {name}"))
        || text
            .lines()
            .any(|line| line.trim_start().starts_with("pub(crate) use ") && is_word(line))
}

#[test]
fn architecture_md_names_only_what_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let tree = tree();
    let mut missing = Vec::new();
    let mut checked = 0;
    for span in code_spans(&text) {
        if names_a_path(span) {
            checked += 1;
            if !exists(&tree, span) {
                missing.push(span.to_string());
            }
        } else if let Some(found) = module_exists(&tree, span) {
            checked += 1;
            if !found {
                missing.push(span.to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist: {missing:?}"
    );
    assert!(
        checked > 40,
        "only {checked} names checked: is the parser still right?"
    );
}

#[test]
fn the_tidy_check_catches_a_name_that_is_gone() {
    let tree = tree();
    assert!(exists(&tree, "src/transport/segment.rs"));
    assert!(exists(&tree, "handle.rs"));
    assert!(exists(&tree, "_bulk.rs"));
    assert!(
        !exists(&tree, "namespace.rs"),
        "the old name of cloudflare/handle.rs"
    );
    assert!(!exists(&tree, "src/seam.rs"), "moved into src/transport/");
    assert_eq!(
        module_exists(&tree, "transport::segment::encode"),
        Some(true)
    );
    assert_eq!(module_exists(&tree, "policy::ReadLimits"), Some(true));
    assert_eq!(
        module_exists(&tree, "transport::nothing::here"),
        Some(false)
    );
    assert_eq!(
        module_exists(&tree, "transport::call_until_done"),
        Some(true)
    );
    assert_eq!(
        module_exists(&tree, "transport::segment::no_such_function"),
        Some(false),
        "a function the map names must exist"
    );
    assert_eq!(module_exists(&tree, "ClientHooks::pre"), None);
}

/// The `pub fn` names of the `impl ClientBuilder` block in `file`.
fn builder_methods(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let block = text
        .split("impl ClientBuilder {")
        .nth(1)
        .unwrap_or_else(|| panic!("{file} has no `impl ClientBuilder`"));
    let block = &block[..block.find("\n}\n").unwrap()];
    let mut names: Vec<String> = block
        .split("pub fn ")
        .skip(1)
        .map(|rest| rest[..rest.find(['(', '<']).unwrap()].to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_two_client_builders_have_the_same_methods() {
    let fastly = builder_methods("src/fastly/mod.rs");
    assert!(fastly.contains(&"base_url".to_string()), "{fastly:?}");
    assert_eq!(fastly, builder_methods("src/cloudflare/mod.rs"));
}

/// The builders take their credential the same way: a token as a string, on both providers.
#[test]
fn both_builders_take_a_token_string() {
    let _ = edgekv::fastly::Client::builder("token").build().unwrap();
    let token = String::from("token");
    let _ = edgekv::fastly::Client::builder(&token).build().unwrap();
    let _ = edgekv::cloudflare::Client::builder(&token, "account")
        .build()
        .unwrap();
    let _ = edgekv::cloudflare::Client::builder(&*token, "account")
        .build()
        .unwrap();
    let _ = edgekv::cloudflare::Client::builder(token, "account")
        .build()
        .unwrap();
}
