//! The section-5 man pages of the two configuration files,
//! `byteback.toml(5)` and `byteback-server.toml(5)`.
//!
//! Every key, its text and its default come from
//! `byteback::config_reference`, that is from the structs the programs
//! parse the files into (each field's `///` comment, and `Default`
//! serialized with toml); only the framing (what the file is, where it
//! lives, what else is in its directory) is written here.

use byteback::config_reference::{self as reference, Section};
use roff::{Inline, Roff, bold, italic, roman};

/// One configuration file's page.
pub struct Page {
    /// The page's name, `byteback.toml`: the file is `<name>.5`.
    pub name: &'static str,
    /// The program whose package ships it (its man directory in assets).
    pub program: &'static str,
    /// The NAME line's description.
    summary: &'static str,
    /// Where the file is.
    synopsis: &'static str,
    /// DESCRIPTION, one paragraph each (Markdown `code` spans).
    description: &'static [&'static str],
    /// FILES: (path, what it is).
    files: &'static [(&'static str, &'static str)],
    /// SEE ALSO.
    see_also: &'static [&'static str],
    /// The keys.
    sections: fn() -> Vec<Section>,
}

/// Both pages.
pub fn pages() -> [Page; 2] {
    [CLIENT, SERVER]
}

const COMMON: &str = "Every key has a default, so an empty file is valid. Unknown keys and \
    values of the wrong type are errors that name the file, the line and the key. Durations \
    are written like `\"90s\"`, `\"10m\"`, `\"6h\"` or `\"7 days\"`.";

const CLIENT: Page = Page {
    name: "byteback.toml",
    program: "byteback",
    summary: "configuration file of the byteback backup client",
    synopsis: "/etc/byteback/config.toml",
    description: &[
        "`byteback` reads `config.toml` in its configuration directory: `--config-dir DIR`, \
         else `$BYTEBACK_CONFIG_DIR`, else `/etc/byteback`. `byteback setup` writes a \
         commented one, with the destination and this machine's name set and every other key \
         shown with its default.",
        COMMON,
        "Options on the command line take precedence over the file (`--destination`, \
         `--source`, `--exclude`). `byteback show-config` prints the settings in effect: \
         file, options and defaults together.",
    ],
    files: &[
        ("/etc/byteback/config.toml", "this file"),
        (
            "/etc/byteback/key, key.pub",
            "this machine's SSH key for the server",
        ),
        (
            "/etc/byteback/known_hosts",
            "the server's host key, trusted by `byteback test` (byteback never reads `~/.ssh/config`)",
        ),
        (
            "/etc/byteback/excludes",
            "extra rsync exclude patterns, one per line, `#` comments",
        ),
        (
            "/etc/byteback/lock",
            "the backup lock (`flock`): one backup at a time",
        ),
        (
            "/etc/byteback/index",
            "the change index: what the sources looked like at the last snapshot",
        ),
        (
            "/etc/byteback/pre-backup.d/, post-backup.d/",
            "hooks run before and after each backup",
        ),
        (
            "/var/lib/byteback/state.json",
            "how the last backup went, for `byteback status` (`state.json` inside a configuration directory other than `/etc/byteback`)",
        ),
    ],
    see_also: &[
        "byteback(1)",
        "byteback-setup(1)",
        "byteback-backup(1)",
        "byteback-show-config(1)",
        "byteback-server.toml(5)",
    ],
    sections: reference::client,
};

const SERVER: Page = Page {
    name: "byteback-server.toml",
    program: "byteback-server",
    summary: "configuration file of a byteback server's store",
    synopsis: "STORE/.byteback/server.toml",
    description: &[
        "`byteback-server` reads `.byteback/server.toml` in the store it serves (`--store DIR`, \
         by default the backup user's home). `byteback-server setup` writes a commented one, \
         with the backend it chose from the store's filesystem.",
        COMMON,
        "`byteback-server show-config` prints the store's settings in effect, as TOML that \
         can be pasted back.",
        "In hardened mode (`byteback-server setup --user NAME --hardened`), `min_free_percent`, \
         `target_free_percent`, `min_age` and `min_snapshot_interval` are root's: they come \
         from `/etc/byteback-server/hardened.d/NAME.toml`, written from this file the first \
         time and kept afterwards, which the privileged helper enforces and the server applies \
         in place of this file's.",
    ],
    files: &[
        ("STORE/.byteback/server.toml", "this file"),
        (
            "STORE/.byteback/server.log",
            "one line per event; at 1 MiB it becomes `server.log.1` (one older file kept)",
        ),
        (
            "STORE/.byteback/rsync-probe.json",
            "what the configured `rsync` can do, probed once per binary (again when it or byteback changes; safe to delete)",
        ),
        (
            "STORE/.byteback/replication/",
            "the replication key, its `known_hosts` and what each replica holds",
        ),
        (
            "/etc/byteback-server/hardened.d/USER.toml",
            "hardened mode: root's store, helper and policy for the backup user USER",
        ),
    ],
    see_also: &[
        "byteback-server(1)",
        "byteback-server-setup(1)",
        "byteback-server-show-config(1)",
        "byteback-server-prune(1)",
        "byteback-server-replicate(1)",
        "byteback.toml(5)",
    ],
    sections: reference::server,
};

/// Markdown `code` spans in bold, the rest in roman; lines joined.
fn inline(text: &str) -> Vec<Inline> {
    let text = text.split('\n').collect::<Vec<_>>().join(" ");
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// The doc comment's paragraphs (separated by a blank line).
fn paragraphs(doc: &str) -> impl Iterator<Item = &str> {
    doc.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
}

impl Page {
    /// The page in roff, as `man` reads it.
    pub fn render(&self, version: &str) -> String {
        let mut page = Roff::new();
        let title = self.name.to_uppercase();
        let source = format!("byteback {version}");
        page.control("TH", [title.as_str(), "5", "", source.as_str()]);
        // No hyphenation: keys, paths and options are copied from the page.
        page.control("nh", []);
        page.control("SH", ["NAME"]);
        page.text([roman(format!("{} - {}", self.name, self.summary))]);
        page.control("SH", ["SYNOPSIS"]);
        page.text([bold(self.synopsis)]);
        page.control("SH", ["DESCRIPTION"]);
        for (i, paragraph) in self.description.iter().enumerate() {
            if i > 0 {
                page.control("PP", []);
            }
            page.text(inline(paragraph));
        }
        for section in (self.sections)() {
            match section.table {
                None => page.control("SH", ["KEYS"]),
                Some(table) => page.control("SH", [format!("[{table}]").as_str()]),
            };
            for paragraph in paragraphs(section.doc) {
                page.text(inline(paragraph));
                page.control("PP", []);
            }
            for key in &section.keys {
                page.control("TP", []);
                let mut tag = vec![bold(key.name)];
                match &key.default {
                    Some(default) => tag.extend([roman(" = "), roman(default.as_str())]),
                    None => tag.push(italic(" (unset by default)")),
                }
                page.text(tag);
                for (i, paragraph) in paragraphs(key.doc).enumerate() {
                    if i > 0 {
                        page.control("IP", []);
                    }
                    page.text(inline(paragraph));
                }
            }
        }
        page.control("SH", ["FILES"]);
        for (path, what) in self.files {
            page.control("TP", []);
            page.text([bold(*path)]);
            page.text(inline(what));
        }
        page.control("SH", ["SEE ALSO"]);
        page.text([roman(self.see_also.join(", "))]);
        page.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of both files, with its text and default, is on its page.
    #[test]
    fn every_key_is_on_its_page() {
        for page in pages() {
            let text = page.render("0.0.0");
            assert!(text.contains(&format!(".TH {} 5", page.name.to_uppercase())));
            for section in (page.sections)() {
                if let Some(table) = section.table {
                    assert!(text.contains(&format!(".SH [{table}]")), "{table}");
                }
                for key in &section.keys {
                    let tag = format!("\\fB{}\\fR", key.name);
                    assert!(text.contains(&tag), "{}", key.name);
                }
            }
        }
    }

    #[test]
    fn code_spans_are_bold() {
        assert_eq!(
            inline("a `b` c\nd"),
            vec![roman("a "), bold("b"), roman(" c d")]
        );
    }
}
