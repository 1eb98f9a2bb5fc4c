//! The source tree's invariants (ARCHITECTURE.md's codemap), checked by
//! reading `src/`: the layers import only downwards, child processes start
//! only in the runner, the role table has no catch-all arm, no circle joins
//! the top-level modules, and no decision is taken by matching an English
//! message.
//!
//! Every line counts except those whose trimmed form starts with `//`
//! (comments and doc comments): test modules included, since an upward
//! import in a test still ties the layers together. Each test prints every
//! violation as `src/FILE:LINE: what`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its path below `src/` and its text with comment lines
/// blanked (so offsets still give line numbers).
struct Source {
    rel: String,
    code: String,
}

impl Source {
    /// The 1-based line of a byte offset into `code`.
    fn line_of(&self, offset: usize) -> usize {
        self.code[..offset].matches('\n').count() + 1
    }

    /// The top-level module this file belongs to (`store` for
    /// `store/service.rs`, `config` for `config.rs`); `None` for the crate
    /// root and the binaries.
    fn module(&self) -> Option<&str> {
        let first = self.rel.split('/').next()?;
        match first {
            "lib.rs" | "bin" => None,
            f => Some(f.strip_suffix(".rs").unwrap_or(f)),
        }
    }

    fn under(&self, dir: &str) -> bool {
        self.rel.starts_with(&format!("{dir}/"))
    }

    /// Code lines: (1-based number, text).
    fn lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.code.lines().enumerate().map(|(i, l)| (i + 1, l))
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let code: String = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("//") {
                        ""
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(Source { rel, code });
        }
    }
}

/// Every `.rs` file under `src/`, sorted by path.
fn sources() -> Vec<Source> {
    let root = src_dir();
    let mut out = Vec::new();
    collect(&root, &root, &mut out);
    assert!(
        out.iter().any(|s| s.rel == "lib.rs"),
        "no src/lib.rs under {}",
        root.display()
    );
    out
}

/// The top-level modules: directories in `src/` (but `bin`) and files
/// directly in it (but `lib.rs`), by stem.
fn top_level_modules() -> BTreeSet<String> {
    std::fs::read_dir(src_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            match (p.is_dir(), name.strip_suffix(".rs")) {
                (true, _) if name != "bin" => Some(name),
                (false, Some(stem)) if stem != "lib" => Some(stem.to_owned()),
                _ => None,
            }
        })
        .collect()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier starting at `at` (after whitespace), and its offset.
fn ident_at(text: &str, at: usize) -> Option<(&str, usize)> {
    let rest = &text[at..];
    let start = at + (rest.len() - rest.trim_start().len());
    let len = text[start..]
        .find(|c: char| !is_ident_char(c))
        .unwrap_or(text.len() - start);
    (len > 0).then(|| (&text[start..start + len], start))
}

/// The first names of a `{ ... }` group starting at `open` (the offset of
/// `{`): for `{server::privileged, store::{A, B}, self}` that is `server`,
/// `store` and `self`, each with its offset. Nested groups are skipped.
fn group_heads(text: &str, open: usize) -> Vec<(&str, usize)> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = open + 1;
    for (i, c) in text[open..].char_indices() {
        let at = open + i;
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                if let Some(h) = ident_at(text, item_start) {
                    heads.push(h);
                }
                if c == '}' {
                    break;
                }
                item_start = at + 1;
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    heads
}

/// Every module named right after `prefix` (such as `crate::`), alone or
/// in a `{ ... }` group: (name, 1-based line). An occurrence preceded by an
/// identifier character or `$` (`$crate::`, `my_crate::`) is not one.
fn names_after<'a>(source: &'a Source, prefix: &str) -> Vec<(&'a str, usize)> {
    let text = source.code.as_str();
    let mut out = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| is_ident_char(c) || c == '$') {
            continue;
        }
        let after = at + prefix.len();
        let rest = text[after..].trim_start();
        let next = after + (text[after..].len() - rest.len());
        if rest.starts_with('{') {
            for (name, offset) in group_heads(text, next) {
                out.push((name, source.line_of(offset)));
            }
        } else if let Some((name, offset)) = ident_at(text, after) {
            out.push((name, source.line_of(offset)));
        }
    }
    out
}

/// Fails with every violation, one per line.
fn assert_none(what: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{what}: {} violation(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// What each lower layer must not import: the layers above it.
fn forbidden_for(source: &Source) -> Option<(&'static str, &'static [&'static str])> {
    const ABOVE_ALL: [&str; 5] = ["server", "client", "lifecycle", "catalog", "protocol"];
    const EXEC: [&str; 7] = [
        "server",
        "client",
        "lifecycle",
        "catalog",
        "protocol",
        "store",
        "prune",
    ];
    const STORE: [&str; 6] = [
        "server",
        "client",
        "lifecycle",
        "catalog",
        "protocol",
        "prune",
    ];
    if source.under("exec") {
        Some(("exec", &EXEC))
    } else if source.under("store") {
        Some(("store", &STORE))
    } else if source.under("prune") {
        Some(("prune", &ABOVE_ALL))
    } else {
        None
    }
}

/// Nothing under `store/`, `prune/` or `exec/` imports a layer above it:
/// not the server, the client, the lifecycle, the catalog or the protocol;
/// `exec/` not the store or pruning either, `store/` not pruning. Reached
/// as `crate::X`, in a `use crate::{...}` group, as `super::X` from a
/// directory's `mod.rs` (whose parent is the crate), or through
/// `super::super` (which these directories need for nothing).
#[test]
fn lower_layers_import_nothing_above_them() {
    let mut violations = Vec::new();
    for source in sources() {
        let Some((layer, forbidden)) = forbidden_for(&source) else {
            continue;
        };
        let mut named = names_after(&source, "crate::");
        if source.rel.ends_with("/mod.rs") && source.rel.matches('/').count() == 1 {
            named.extend(names_after(&source, "super::"));
        }
        for (name, line) in named {
            if forbidden.contains(&name) {
                violations.push(format!(
                    "src/{}:{line}: {layer}/ imports {name}, a layer above it",
                    source.rel
                ));
            }
        }
        for (line, text) in source.lines() {
            if text.contains("super::super") {
                violations.push(format!(
                    "src/{}:{line}: `super::super` reaches out of {layer}/: {}",
                    source.rel,
                    text.trim()
                ));
            }
        }
    }
    assert_none("upward imports from store/, prune/, exec/", &violations);
}

/// Whether `text` has `word` with no identifier character right after it.
fn has_word_prefix(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        !text[at + word.len()..]
            .chars()
            .next()
            .is_some_and(is_ident_char)
    })
}

/// Child processes start only through the runner (`exec::Cmd`): outside
/// `src/exec/`, no `Command::new` and no `std::process::Command` (alone or
/// in a `std::process::{...}` group). `CommandExt`, which configures the
/// runner's own command, is not a second runner.
#[test]
fn child_processes_start_only_in_the_runner() {
    let mut violations = BTreeSet::new();
    for source in sources() {
        if source.under("exec") {
            continue;
        }
        for (line, text) in source.lines() {
            if text.contains("Command::new(") || has_word_prefix(text, "process::Command") {
                violations.insert((source.rel.clone(), line, text.trim().to_owned()));
            }
        }
        for (name, line) in names_after(&source, "process::") {
            if name == "Command" {
                let text = source.code.lines().nth(line - 1).unwrap_or_default();
                violations.insert((source.rel.clone(), line, text.trim().to_owned()));
            }
        }
    }
    let violations: Vec<String> = violations
        .into_iter()
        .map(|(rel, line, text)| format!("src/{rel}:{line}: {text}"))
        .collect();
    assert_none(
        "std::process::Command outside src/exec/ (use exec::Cmd)",
        &violations,
    );
}

/// The body of the first `fn NAME(` in `code`, from its `{` to the
/// matching `}`, and the offset of that `{`.
fn fn_body<'a>(code: &'a str, signature: &str) -> Option<(&'a str, usize)> {
    let start = code.find(signature)?;
    let open = start + code[start..].find('{')?;
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&code[open..=open + i], open));
                }
            }
            _ => {}
        }
    }
    None
}

/// The arms of a `match` body whose pattern matches anything: `_`, or a
/// lower-case binding (`other =>`), alone or among alternatives, guarded
/// or not. (0-based line within `body`, the line.)
fn catch_all_arms(body: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, text) in body.lines().enumerate() {
        for (at, _) in text.match_indices("=>") {
            // The arm's pattern: what precedes `=>` on its line, after the
            // last `{` or `,` (alternatives may continue a previous line).
            let pattern = &text[..at];
            let pattern = pattern
                .rfind(['{', ','])
                .map_or(pattern, |p| &pattern[p + 1..]);
            let pattern = pattern.split(" if ").next().unwrap_or(pattern);
            let catch_all = pattern.split('|').map(str::trim).any(|alternative| {
                alternative == "_"
                    || alternative.starts_with(|c: char| c.is_ascii_lowercase())
                        && alternative.chars().all(is_ident_char)
            });
            if catch_all {
                found.push((i, text.trim().to_owned()));
            }
        }
    }
    found
}

/// The role table decides every pair of role and request by name: `fn
/// allows` in `src/server/roles.rs` has no catch-all arm (`_ =>`, nor a
/// lower-case binding that matches anything), so a new role or request
/// must be placed by hand in every row.
#[test]
fn the_role_table_has_no_catch_all_arm() {
    let all = sources();
    let roles = all
        .iter()
        .find(|s| s.rel == "server/roles.rs")
        .expect("src/server/roles.rs, the role table, is missing");
    let (body, open) =
        fn_body(&roles.code, "fn allows(").expect("no `fn allows(` in src/server/roles.rs");
    let first_line = roles.line_of(open);
    let violations: Vec<String> = catch_all_arms(body)
        .into_iter()
        .map(|(i, text)| {
            format!(
                "src/server/roles.rs:{}: catch-all arm in fn allows: {text}",
                first_line + i
            )
        })
        .collect();
    assert_none("catch-all arms in the role table", &violations);
}

/// The imports of module `to` by module `from` (the first few, for the
/// report).
type Edges = BTreeMap<(String, String), Vec<String>>;

/// Tarjan's strongly connected components of the module graph.
fn components(nodes: &BTreeSet<String>, edges: &Edges) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(s: &mut State<'_>, v: &str) {
        s.index.insert(v.to_owned(), s.next);
        s.low.insert(v.to_owned(), s.next);
        s.next += 1;
        s.stack.push(v.to_owned());
        s.on_stack.insert(v.to_owned());
        let targets: Vec<String> = s
            .edges
            .keys()
            .filter(|(from, _)| from == v)
            .map(|(_, to)| to.clone())
            .collect();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let low = s.low[v].min(s.low[&w]);
                s.low.insert(v.to_owned(), low);
            } else if s.on_stack.contains(&w) {
                let low = s.low[v].min(s.index[&w]);
                s.low.insert(v.to_owned(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The shortest circle through `start` inside `component` (breadth
/// first), as module names with `start` at both ends.
fn circle_through(start: &str, component: &[String], edges: &Edges) -> Vec<String> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_owned()]);
    while let Some(v) = queue.pop_front() {
        for (_, to) in edges
            .keys()
            .filter(|(from, to)| from == &v && component.contains(to))
        {
            if to == start {
                let mut path = vec![start.to_owned(), v.clone()];
                let mut at = v.clone();
                while let Some(prev) = came_from.get(&at) {
                    path.push(prev.clone());
                    at = prev.clone();
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(to) && to != start {
                came_from.insert(to.clone(), v.clone());
                queue.push_back(to.clone());
            }
        }
    }
    vec![start.to_owned()]
}

/// No circle of imports joins the top-level modules of `src/` (each
/// directory, and each file directly in `src/` by its stem): the graph of
/// `crate::X` references between them is acyclic. Each circle is printed
/// with one reference per step.
#[test]
fn no_import_circle_between_top_level_modules() {
    let modules = top_level_modules();
    let mut edges: Edges = BTreeMap::new();
    for source in sources() {
        let Some(from) = source.module() else {
            continue;
        };
        for (to, line) in names_after(&source, "crate::") {
            if to != from && modules.contains(to) {
                let seen = edges.entry((from.to_owned(), to.to_owned())).or_default();
                if seen.len() < 3 {
                    seen.push(format!("src/{}:{line}", source.rel));
                }
            }
        }
    }
    let mut violations = Vec::new();
    for component in components(&modules, &edges) {
        if component.len() < 2 {
            continue;
        }
        // The shortest circle through each module of the component, each
        // printed once whatever module it starts from.
        let mut circles = BTreeSet::new();
        for start in &component {
            let mut circle = circle_through(start, &component, &edges);
            circle.pop();
            let first = (0..circle.len()).min_by_key(|&i| &circle[i]).unwrap_or(0);
            circle.rotate_left(first);
            circles.insert(circle);
        }
        let mut report = format!("modules joined by circles: {}", component.join(", "));
        for mut circle in circles {
            circle.push(circle[0].clone());
            report += &format!("\n  circle {}", circle.join(" -> "));
            for p in circle.windows(2) {
                let at = edges[&(p[0].clone(), p[1].clone())].join(", ");
                report += &format!("\n    {} imports {} at {at}", p[0], p[1]);
            }
        }
        violations.push(report);
    }
    assert_none("import circles between top-level modules", &violations);
}

/// The argument of every `contains(` call in `code`: (text, offset).
fn contains_arguments(code: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    for (at, m) in code.match_indices("contains(") {
        let open = at + m.len() - 1;
        let mut depth = 0;
        let mut in_string = false;
        let mut escaped = false;
        for (i, c) in code[open..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((&code[open + 1..open + i], at));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// No decision by English substring: the client does not decide to make a
/// full pass by finding "make a full pass" in the server's message
/// (`src/client/backup.rs`, or what it is split into), and the store's
/// `fn log(` does not choose a severity with `contains(`.
#[test]
fn no_decision_by_english_substring() {
    let all = sources();
    let mut violations = Vec::new();
    for source in all
        .iter()
        .filter(|s| s.rel == "client/backup.rs" || s.under("client/backup"))
    {
        for (argument, at) in contains_arguments(&source.code) {
            if argument.contains("make a full pass\"") {
                violations.push(format!(
                    "src/{}:{}: decides by the server's words: contains({argument})",
                    source.rel,
                    source.line_of(at)
                ));
            }
        }
    }
    if let Some(store) = all.iter().find(|s| s.rel == "store/mod.rs") {
        if let Some((body, open)) = fn_body(&store.code, "fn log(") {
            let first = store.line_of(open);
            for (i, text) in body.lines().enumerate() {
                if text.contains("contains(") {
                    violations.push(format!(
                        "src/store/mod.rs:{}: fn log chooses by substring: {}",
                        first + i,
                        text.trim()
                    ));
                }
            }
        }
    }
    assert_none("decisions by English substring", &violations);
}

/// The scanners above find what they must and nothing else, so that a
/// passing check means something.
#[test]
fn the_checks_see_what_they_look_for() {
    let source = Source {
        rel: "store/x.rs".into(),
        code: "use crate::{\n    server::privileged,\n    store::{A, B},\n    self,\n};\n\
               let a = crate :: x;\nlet b = $crate::client::y;\nlet c = my_crate::protocol::z;\n\
               let d = crate::catalog::Row;\nuse std::process::{Child, Command};\n\
               use std::os::unix::process::CommandExt;\n"
            .into(),
    };
    assert_eq!(
        names_after(&source, "crate::"),
        [("server", 2), ("store", 3), ("self", 4), ("catalog", 9)]
    );
    assert_eq!(
        names_after(&source, "process::"),
        [("Child", 10), ("Command", 10), ("CommandExt", 11)]
    );
    assert!(has_word_prefix(
        "use std::process::Command;",
        "process::Command"
    ));
    assert!(!has_word_prefix(
        "use std::os::unix::process::CommandExt;",
        "process::Command"
    ));
    let body = "{\n    match role {\n        A => match ask {\n            X | Y => true,\n            _ => false,\n        },\n        B | other => false,\n        C if x => true,\n    }\n}";
    let arms: Vec<usize> = catch_all_arms(body).into_iter().map(|(i, _)| i).collect();
    assert_eq!(arms, [4, 6]);
    let code = "if why.contains(\"make a full pass\") || why.contains(x(\")\")) {}";
    let arguments: Vec<&str> = contains_arguments(code)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(arguments, ["\"make a full pass\"", "x(\")\")"]);
    assert_eq!(
        fn_body("fn log(&self) { if a { b } }\nfn log_event() {}", "fn log("),
        Some(("{ if a { b } }", 14))
    );
}
