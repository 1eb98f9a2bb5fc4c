//! Checks of the documentation as a reader meets it: the README stays a
//! first look (at most 300 lines) that links every guide page in `docs/`,
//! its test command is the one `.ci/run` runs, and every relative link in
//! the Markdown files reaches a file and, with `#anchor`, a heading there.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The guide pages.
fn guides() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages
}

/// Every Markdown file a reader is sent to.
fn markdown() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "SECURITY.md",
        "RELIABILITY.md",
        "bench/README.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .collect();
    files.extend(guides());
    files
}

/// Text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut found = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].to_owned());
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn the_readme_is_a_first_look() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; at most 300");
    for page in guides() {
        let name = page.file_name().unwrap().to_string_lossy();
        let link = format!("](docs/{name})");
        assert!(
            readme.contains(&link),
            "README.md does not link docs/{name}"
        );
    }
}

/// `.ci/run` runs exactly the command the README tells a contributor to run.
#[test]
fn the_readme_test_command_is_what_ci_runs() {
    let readme = read(&root().join("README.md"));
    let ci = read(&root().join(".ci/run"));
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    assert!(
        readme.contains(&format!("```\n{last}\n```")),
        "README.md does not show `{last}`, the command .ci/run runs"
    );
}

#[test]
fn relative_links_resolve() {
    let mut broken = Vec::new();
    for file in markdown() {
        let text = read(&file);
        let dir = file.parent().unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", file.display()));
                continue;
            }
            if !anchor.is_empty() && !anchors(&read(&target)).iter().any(|a| a == anchor) {
                broken.push(format!("{}: {link}: no such heading", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug(" Hardened mode: history the backup user cannot rewrite"),
        "hardened-mode-history-the-backup-user-cannot-rewrite"
    );
    assert_eq!(slug("`[sandbox]` and `rsync`"), "sandbox-and-rsync");
}
