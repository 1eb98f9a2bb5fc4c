//! What each end-to-end test proves, read from the test's own `///`
//! comment in `tests/*.rs`, so that the description lives in one place and
//! RELIABILITY.md (see `reliability.rs`) only quotes it.
//!
//! The sources are read as text, not parsed as Rust: rustfmt's layout is
//! assumed (a `mod` closes with a `}` at its own indentation). A test is
//! declared in one of three ways, and cargo names it accordingly:
//!
//! - `#[test] fn NAME()`: reported as `NAME`;
//! - `fn NAME(kind: FsKind)` named in `on_both_backends!(…)`, which makes
//!   `NAME::btrfs` and `NAME::ext4_plain`;
//! - `mod NAME { #[test] fn btrfs() … }` written out by hand, reported as
//!   `NAME::…`, described by the `mod`'s comment (or its functions' own).

use std::path::Path;

/// One end-to-end test (or pair, for a test run on both backends) as its
/// source declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDoc {
    /// The test file's stem: `prune` for `tests/prune.rs`.
    pub file: String,
    /// The function's name, or the module's for a module of tests: cargo
    /// reports `NAME` or `NAME::…`.
    pub name: String,
    /// Its `///` comment as one line; empty when it has none.
    pub doc: String,
    /// Where it is declared (1-based), for messages.
    pub line: usize,
}

impl TestDoc {
    /// Whether cargo's name `test` (as `cargo test` prints it) is this test.
    pub fn runs_as(&self, test: &str) -> bool {
        test == self.name
            || test
                .strip_prefix(self.name.as_str())
                .is_some_and(|rest| rest.starts_with("::"))
    }
}

/// Every test in `tests/*.rs` under `root`, by file name and then in
/// source order.
pub fn read(root: &Path) -> std::io::Result<Vec<TestDoc>> {
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|x| x == "rs"));
    files.sort();
    let mut tests = Vec::new();
    for path in files {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        tests.extend(parse(&stem, &std::fs::read_to_string(&path)?));
    }
    Ok(tests)
}

/// A function or module as the scan met it.
struct Item {
    name: String,
    doc: String,
    line: usize,
    /// Marked `#[test]`.
    test: bool,
    /// For a function: the module it is in, if any.
    inside: Option<String>,
    is_mod: bool,
}

/// The tests one file declares, in source order.
pub fn parse(file: &str, source: &str) -> Vec<TestDoc> {
    let backends = on_both_backends(source);
    let mut items: Vec<Item> = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut test = false;
    // The module being read: its name and the indentation of its `}`.
    let mut module: Option<(String, usize)> = None;
    for (n, raw) in source.lines().enumerate() {
        let line = raw.trim_start();
        let indent = raw.len() - line.len();
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text).trim_end());
            continue;
        }
        if line.starts_with("#[") {
            test |= line.starts_with("#[test]");
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if module.as_ref().is_some_and(|(_, at)| *at == indent) && line.starts_with('}') {
            module = None;
        } else if let Some(name) = declared(line, "mod ") {
            if line.ends_with('{') {
                module = Some((name.to_owned(), indent));
            }
            items.push(Item {
                name: name.to_owned(),
                doc: one_line(&doc),
                line: n + 1,
                test: false,
                inside: None,
                is_mod: true,
            });
        } else if let Some(name) = declared(line, "fn ") {
            items.push(Item {
                name: name.to_owned(),
                doc: one_line(&doc),
                line: n + 1,
                test,
                inside: module.as_ref().map(|(m, _)| m.clone()),
                is_mod: false,
            });
        }
        doc.clear();
        test = false;
    }
    let mut tests = Vec::new();
    for item in &items {
        let entry = |doc: &str| TestDoc {
            file: file.to_owned(),
            name: item.name.clone(),
            doc: doc.to_owned(),
            line: item.line,
        };
        if item.is_mod {
            // A module of tests is one entry, described by its comment or,
            // failing that, by its tests' (which must then all have one).
            let inner: Vec<&Item> = items
                .iter()
                .filter(|i| i.test && i.inside.as_deref() == Some(item.name.as_str()))
                .collect();
            if inner.is_empty() {
                continue;
            }
            if item.doc.is_empty() && inner.iter().any(|i| !i.doc.is_empty()) {
                for i in inner {
                    tests.push(TestDoc {
                        name: format!("{}::{}", item.name, i.name),
                        doc: i.doc.clone(),
                        line: i.line,
                        file: file.to_owned(),
                    });
                }
            } else {
                tests.push(entry(&item.doc));
            }
        } else if item.inside.is_none() && (item.test || backends.contains(&item.name.as_str())) {
            tests.push(entry(&item.doc));
        }
    }
    // A name given to the macro whose function is not in this file is
    // still a test, with no description here.
    for name in backends {
        if !items.iter().any(|i| !i.is_mod && i.name == name) {
            tests.push(TestDoc {
                file: file.to_owned(),
                name: name.to_owned(),
                doc: String::new(),
                line: 0,
            });
        }
    }
    tests
}

/// The name after `keyword` (`fn `, `mod `) at the start of a declaration,
/// past any visibility and qualifiers.
fn declared<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix(keyword)?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The functions named in the file's `on_both_backends!(…)` calls.
fn on_both_backends(source: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for (at, _) in source.match_indices("on_both_backends!(") {
        let args = &source[at + "on_both_backends!(".len()..];
        let args = &args[..args.find(')').unwrap_or(args.len())];
        names.extend(args.split(',').map(str::trim).filter(|n| !n.is_empty()));
    }
    names
}

/// A comment's lines as one line of text.
fn one_line(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn reads_every_way_a_test_is_declared() {
        let source = "\
use x;

support::world::on_both_backends!(
    on_both,
    undocumented,
);

/// Proves one thing
/// on two lines.
#[test]
#[ignore = \"slow\"]
fn plain_test() {
    let s = \"{\";
}

/// A helper, not a test.
fn helper() {}

#[test]
/// Attribute first.
fn attribute_first() {}

/// Runs on both backends.
fn on_both(kind: FsKind) {}

fn undocumented(kind: FsKind) {}

/// Both, by hand.
mod by_hand {
    #[test]
    fn btrfs() {
        super::x()
    }
    #[test]
    fn ext4_plain() {}
}

mod each_its_own {
    /// The first.
    #[test]
    fn first() {}
}

#[test]
fn after_the_modules() {}
";
        let found: Vec<(String, String)> = parse("f", source)
            .into_iter()
            .map(|t| (t.name, t.doc))
            .collect();
        let want = [
            ("plain_test", "Proves one thing on two lines."),
            ("attribute_first", "Attribute first."),
            ("on_both", "Runs on both backends."),
            ("undocumented", ""),
            ("by_hand", "Both, by hand."),
            ("each_its_own::first", "The first."),
            ("after_the_modules", ""),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn cargo_names_match_their_declaration() {
        let t = |name: &str| TestDoc {
            file: "f".into(),
            name: name.into(),
            doc: String::new(),
            line: 1,
        };
        assert!(t("remote").runs_as("remote"));
        assert!(t("remote").runs_as("remote::btrfs"));
        assert!(!t("remote").runs_as("remote_twice"));
        assert!(!t("remote").runs_as("other::remote"));
    }

    /// Every end-to-end test says what it proves, in its own `///` comment
    /// (RELIABILITY.md quotes it): a test without one fails here.
    #[test]
    fn every_end_to_end_test_says_what_it_proves() {
        let tests = read(&root()).unwrap();
        assert!(tests.len() > 50, "only {} tests found", tests.len());
        let missing: Vec<String> = tests
            .iter()
            .filter(|t| t.doc.is_empty())
            .map(|t| format!("tests/{}.rs:{}: {}", t.file, t.line, t.name))
            .collect();
        assert!(
            missing.is_empty(),
            "these tests have no `///` comment saying what they prove:\n{}",
            missing.join("\n")
        );
    }
}
