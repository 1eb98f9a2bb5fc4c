//! The report's pages, rendered from a [`Report`] (pure): `index.html`,
//! the overview of every client and the store, and one page per client.
//! Every text that is not the report's own goes through [`escape`]; the
//! pages carry their style inline and need nothing else, so they open from
//! `file://` and from any web server. The overview's only script makes
//! its columns sortable by a click (or `index.html#sort=KEY`, `#sort=-KEY`
//! for descending); without it the table reads the same, worst state first.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::html::escape;
use super::svg;
use super::{ClientReport, Report};
use crate::server::space_history::MIN_INTERVAL;
use crate::server::status::{self, State};
use crate::sys::fs::human_bytes;

/// The page of a client: `client-NAME.html`, each byte outside
/// `[A-Za-z0-9._-]` written as `~XX` (and `~` itself), so the name is a
/// plain file name and a URL path segment whatever it holds, and no two
/// clients share a page. (Client names are validated already: this does
/// not rely on it.)
pub fn page_name(client: &str) -> String {
    let mut name = String::from("client-");
    for b in client.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                name.push(char::from(b))
            }
            _ => {
                let _ = write!(name, "~{b:02X}");
            }
        }
    }
    name.push_str(".html");
    name
}

/// Whether `file` is a name [`page_name`] gives.
pub fn is_page_name(file: &str) -> bool {
    file.starts_with("client-") && file.ends_with(".html")
}

const STYLE: &str = "
:root { color-scheme: light; --ok: #2e7d32; --partial: #b58900; --stale: #e65100; --never: #6b6b6b; --failing: #c62828; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; margin: 0 auto; padding: 1.2em 2em 3em; max-width: 1200px; color: #1d1d1d; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 .2em; }
h2 { font-size: 1.2em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
a { color: #0b57d0; }
.sub, footer { color: #555; }
footer { margin-top: 3em; font-size: .85em; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: .92em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3em .45em; border-bottom: 1px solid #e5e5e5; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; white-space: nowrap; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th[aria-sort=ascending] button::after { content: ' \\25B2'; }
th[aria-sort=descending] button::after { content: ' \\25BC'; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.when { white-space: nowrap; }
h1 .state { font-size: .55em; vertical-align: middle; }
.state { display: inline-block; min-width: 4.5em; text-align: center; border-radius: 1em; padding: 0 .6em; color: #fff; font-weight: 600; font-size: .9em; }
.state.ok { background: var(--ok); } .state.partial { background: var(--partial); } .state.stale { background: var(--stale); }
.state.never { background: var(--never); } .state.failing { background: var(--failing); }
.bad { color: var(--failing); font-weight: 600; }
.good { color: var(--ok); }
.reason { min-width: 12em; max-width: 22em; overflow-wrap: anywhere; white-space: pre-wrap; }
td.notes { min-width: 10em; max-width: 16em; overflow-wrap: anywhere; }
.wide { overflow-x: auto; }
ul.notes { margin: 0; padding-left: 1.1em; }
.alert { border-left: 5px solid var(--failing); background: #fdecea; padding: .6em 1em; margin: .8em 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.warning { border-left: 5px solid var(--stale); background: #fff4e5; padding: .6em 1em; margin: .8em 0; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25em 1.5em; margin: .8em 0; }
.facts dt { color: #555; } .facts dd { margin: 0; }
.note { color: #555; font-style: italic; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, sans-serif; fill: #444; }
svg .axis, svg .tick { stroke: #888; stroke-width: 1; }
svg .grid { stroke: #e8e8e8; stroke-width: 1; }
svg .mark { fill: var(--ok); stroke: #fff; stroke-width: 1.5; }
svg .mark.partial { fill: #fff; stroke: var(--partial); stroke-width: 2.5; }
svg .series { fill: none; stroke: #0b57d0; stroke-width: 2; }
svg .dot { fill: #0b57d0; }
svg .ceiling { stroke: #999; stroke-dasharray: 6 4; }
.legend span { margin-right: 1.2em; }
.legend .full::before { content: '\\25CF '; color: var(--ok); }
.legend .part::before { content: '\\25CB '; color: var(--partial); font-weight: 700; }
";

/// Click-to-sort for the overview (the table works without it): each
/// header becomes a button; `data-sort` holds a cell's key, `data-type`
/// on the header says whether keys are numbers.
const SORT_SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('clients');
  if (!table) return;
  var heads = table.tHead.rows[0].cells, body = table.tBodies[0];
  function key(row, i, num) {
    var cell = row.cells[i], v = cell.getAttribute('data-sort');
    if (v === null) v = cell.textContent;
    return num ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(i, descending) {
    var num = heads[i].getAttribute('data-type') === 'num';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, i, num), y = key(b, i, num);
      var r = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -r : r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < heads.length; j++) heads[j].removeAttribute('aria-sort');
    heads[i].setAttribute('aria-sort', descending ? 'descending' : 'ascending');
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    var b = document.createElement('button');
    b.type = 'button';
    b.textContent = th.textContent;
    th.textContent = '';
    th.appendChild(b);
    b.addEventListener('click', function () {
      sortBy(i, th.getAttribute('aria-sort') === 'ascending');
    });
  });
  table.setAttribute('data-sortable', 'yes');
  var m = /^#sort=(-?)([a-z]+)$/.exec(location.hash);
  if (m) Array.prototype.forEach.call(heads, function (th, i) {
    if (th.getAttribute('data-key') === m[2]) sortBy(i, m[1] === '-');
  });
})();
"#;

/// A whole page around `body`.
fn page(title: &str, body: &str, script: Option<&str>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"byteback-server report\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}",
        escape(title)
    );
    if let Some(script) = script {
        let _ = writeln!(o, "<script>{script}</script>");
    }
    o.push_str("</body>\n</html>\n");
    o
}

fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time in a table cell (the page says times are UTC).
fn short_when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M").to_string()
}

/// At most `max` characters of `text` for an overview cell, with `…` if
/// cut (the whole text is on the client's page and in the cell's title).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// An overview cell's text, clipped, with the whole text as its title.
fn clipped(text: &str) -> String {
    format!(
        "<span title=\"{}\">{}</span>",
        escape(text),
        escape(&clip(text, 140))
    )
}

fn footer(report: &Report) -> String {
    format!(
        "<footer>Written by <code>byteback-server report</code> at {} from the store <code>{}</code>; run it again to refresh. Times are UTC.</footer>\n",
        escape(&when(report.now)),
        escape(&report.root)
    )
}

fn state_badge(state: State) -> String {
    format!(
        "<span class=\"state {0}\">{0}</span>",
        escape(state_word(state))
    )
}

fn state_word(state: State) -> &'static str {
    match state {
        State::Suspect => "suspect",
        State::Failing => "failing",
        State::Never => "never",
        State::Stale => "stale",
        State::Partial => "partial",
        State::Ok => "ok",
        State::Moved => "moved",
    }
}

/// What a state means, as status's documentation says it.
fn state_meaning(state: State) -> &'static str {
    match state {
        State::Suspect => {
            "a snapshot changed or deleted far more of its files than usual; the ones before it are kept until byteback-server ack"
        }
        State::Failing => "its last transfer, snapshot request or restore was refused or failed",
        State::Never => "it has no snapshot yet",
        State::Stale => "its newest snapshot is older than stale_after",
        State::Partial => "its newest snapshot left some files out",
        State::Ok => "all well",
        State::Moved => {
            "its backups moved to another server; this copy waits for move-client --retire"
        }
    }
}

/// The alerts and notices of a client, one item each.
fn notes(c: &ClientReport) -> Vec<String> {
    let s = &c.status;
    let mut notes = Vec::new();
    if let Some(notice) = &s.notice {
        notes.push(clipped(notice));
    }
    for m in &s.suspect {
        notes.push(format!(
            "SUSPECT snapshot {}: {}",
            escape(&m.snapshot),
            clipped(&m.reason)
        ));
    }
    if s.newest_partial {
        notes.push("newest snapshot is partial".into());
    }
    if let Some(since) = s.running_since {
        notes.push(format!(
            "backup running since {}",
            escape(&short_when(since))
        ));
    }
    for r in s.replicas.iter().filter(|r| r.snapshots_behind > 0) {
        notes.push(format!(
            "replica {} is {} snapshot(s) behind",
            escape(&r.replica),
            r.snapshots_behind
        ));
    }
    notes
}

fn notes_cell(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let items: String = notes.iter().map(|n| format!("<li>{n}</li>")).collect();
    format!("<ul class=\"notes\">{items}</ul>")
}

/// The last attempt in a few words: `ok receive` or `failed complete`.
fn attempt_words(c: &ClientReport) -> (String, i64, String) {
    match &c.status.last_attempt {
        None => ("none recorded".into(), 0, String::new()),
        Some(a) => (
            format!(
                "{} {}<br><span class=\"sub\">{}</span>",
                if a.ok {
                    "<span class=\"good\">ok</span>"
                } else {
                    "<span class=\"bad\">failed</span>"
                },
                escape(&a.request),
                escape(&short_when(a.time))
            ),
            a.time.as_second(),
            a.reason.as_deref().map(clipped).unwrap_or_default(),
        ),
    }
}

/// `index.html`: every client, worst first, and the store.
pub fn index(report: &Report) -> String {
    let mut b = String::new();
    let s = &report.store;
    let _ = writeln!(
        b,
        "<header><h1>byteback: {}</h1><p class=\"sub\">Store <code>{}</code> &middot; {} client(s) &middot; as of {}</p></header>",
        escape(&report.host),
        escape(&report.root),
        report.clients.len(),
        escape(&when(report.now))
    );
    if let Some(alert) = &s.alert {
        let _ = writeln!(
            b,
            "<div class=\"alert\"><strong>Store alert:</strong> {}</div>",
            escape(alert)
        );
    }
    if let Some(w) = &s.kernel_warning {
        let _ = writeln!(
            b,
            "<div class=\"warning\"><strong>Warning:</strong> {}</div>",
            escape(w)
        );
    }
    let _ = writeln!(
        b,
        "<dl class=\"facts\" id=\"store\"><dt>Free space</dt><dd><strong>{}</strong> of {} ({:.1}%)</dd><dt>Pruning</dt><dd>starts below {}% free, deletes until {}% is free; {} snapshot(s) pruned in the last 24 hours</dd><dt>Space alert</dt><dd>{}</dd></dl>",
        escape(&human_bytes(s.free_bytes)),
        escape(&human_bytes(s.total_bytes)),
        s.free_percent,
        report.pruning.min_free_percent,
        report.pruning.target_free_percent,
        s.pruned_last_24h,
        match &s.alert {
            Some(_) => "<span class=\"bad\">yes, see above</span>",
            None => "none",
        }
    );
    let mut counts = Vec::new();
    for state in [
        State::Suspect,
        State::Failing,
        State::Never,
        State::Stale,
        State::Partial,
        State::Ok,
    ] {
        let n = report
            .clients
            .iter()
            .filter(|c| c.status.state == state)
            .count();
        if n > 0 {
            counts.push(format!("{n} {}", state_word(state)));
        }
    }
    let _ = writeln!(
        b,
        "<h2>Clients</h2>\n<p>{}. Times are UTC; click a column's title to sort by it.</p>",
        if counts.is_empty() {
            "No clients yet".to_owned()
        } else {
            counts.join(", ")
        }
    );
    b.push_str(
        "<div class=\"wide\"><table id=\"clients\">\n<thead><tr>\
<th data-key=\"client\">Client</th>\
<th data-key=\"state\" data-type=\"num\">State</th>\
<th data-key=\"last\" data-type=\"num\">Last backup</th>\
<th data-key=\"age\" data-type=\"num\" class=\"num\">Age</th>\
<th data-key=\"attempt\" data-type=\"num\">Last attempt</th>\
<th data-key=\"reason\">Reason</th>\
<th data-key=\"snapshots\" data-type=\"num\" class=\"num\">Snapshots</th>\
<th data-key=\"size\" data-type=\"num\" class=\"num\">Space held</th>\
<th data-key=\"notes\">Alerts and notices</th>\
</tr></thead>\n<tbody>\n",
    );
    let mut rows: Vec<&ClientReport> = report.clients.iter().collect();
    rows.sort_by(|a, b| {
        (a.status.state, &a.status.client).cmp(&(b.status.state, &b.status.client))
    });
    for c in rows {
        let s = &c.status;
        let newest = c.snapshots.last();
        let (attempt, attempt_key, reason) = attempt_words(c);
        let _ = writeln!(
            b,
            "<tr data-client=\"{name}\" data-state=\"{state}\">\
<td data-sort=\"{name}\"><a href=\"{href}\">{name}</a></td>\
<td data-sort=\"{rank}\" title=\"{meaning}\">{badge}</td>\
<td class=\"when\" data-sort=\"{last_key}\">{last}</td>\
<td class=\"num\" data-sort=\"{age_key}\">{age}</td>\
<td class=\"when\" data-sort=\"{attempt_key}\">{attempt}</td>\
<td class=\"reason\">{reason}</td>\
<td class=\"num\" data-sort=\"{count}\">{count}</td>\
<td class=\"num\" data-sort=\"{size}\">{size_text}</td>\
<td class=\"notes\">{notes}</td></tr>",
            name = escape(&s.client),
            state = state_word(s.state),
            href = escape(&page_name(&s.client)),
            rank = s.state as u8,
            meaning = escape(state_meaning(s.state)),
            badge = state_badge(s.state),
            last_key = newest.map_or(0, |m| m.time.as_second()),
            last = newest.map_or("never".to_owned(), |m| escape(&short_when(m.time))),
            // Never backed up sorts as the oldest of all.
            age_key = s.newest_age_seconds.unwrap_or(i64::from(i32::MAX) * 1000),
            age = s
                .newest_age_seconds
                .map_or("&ndash;".to_owned(), |a| escape(&status::age(a))),
            count = s.snapshots,
            size = s.size_bytes,
            size_text = escape(&human_bytes(s.size_bytes)),
            notes = notes_cell(&notes(c)),
        );
    }
    b.push_str("</tbody>\n</table></div>\n");
    b.push_str("<h2>Store space over time</h2>\n");
    let used: Vec<(Timestamp, u64)> = report
        .samples
        .iter()
        .map(|s| (s.time, s.total_bytes.saturating_sub(s.free_bytes)))
        .collect();
    b.push_str(&samples_note(&used, "space in use"));
    b.push_str(&svg::line_chart(
        &used,
        report.samples.last().map(|s| s.total_bytes),
        "Space in use on the store (dashed: the store's size)",
    ));
    b.push_str("<p class=\"legend\"><span>&mdash; space in use (what pruning sees as not free)</span><span>- - - the store's size</span></p>\n");
    let _ = writeln!(
        b,
        "<p class=\"sub\">Server: rsync {}; sandbox: {}.</p>",
        escape(&s.rsync),
        escape(&s.sandbox)
    );
    b.push_str(&footer(report));
    page(&format!("byteback: {}", report.host), &b, Some(SORT_SCRIPT))
}

/// What the samples behind a chart are, in a sentence.
fn samples_note(points: &[(Timestamp, u64)], what: &str) -> String {
    let every = format!(
        "<code>byteback-server status</code> and <code>report</code> add a sample at most every {} minutes",
        MIN_INTERVAL.as_mins()
    );
    match points {
        [] => format!("<p class=\"note\">No samples of {what} yet: {every}.</p>\n"),
        [one] => format!(
            "<p class=\"note\">Only one sample so far ({}, {}): the chart fills in as {every}.</p>\n",
            escape(&when(one.0)),
            escape(&human_bytes(one.1))
        ),
        [first, .., last] => format!(
            "<p class=\"sub\">{} samples from {} to {}; {every}.</p>\n",
            points.len(),
            escape(&when(first.0)),
            escape(&when(last.0))
        ),
    }
}

/// A client's page: its state, its snapshots on a time axis, its space
/// over time, what pruning would take next, and its last attempt.
pub fn client_page(report: &Report, c: &ClientReport) -> String {
    let s = &c.status;
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<nav><a href=\"index.html\">&larr; all clients</a></nav>\n<header><h1>{} {}</h1><p class=\"sub\">{}</p></header>",
        escape(&s.client),
        state_badge(s.state),
        escape(state_meaning(s.state))
    );
    if let Some(notice) = &s.notice {
        let _ = writeln!(
            b,
            "<div class=\"alert\"><strong>Notice:</strong> {}</div>",
            escape(notice)
        );
    }
    let newest = c.snapshots.last();
    let _ = write!(
        b,
        "<dl class=\"facts\"><dt>Last backup</dt><dd>{}</dd><dt>Snapshots</dt><dd>{}{}</dd><dt>Space held</dt><dd>{} (what its snapshots cost on disk); {} written since its newest snapshot</dd>",
        newest.map_or("never".to_owned(), |m| format!(
            "{} ({} ago){}",
            escape(&when(m.time)),
            escape(&status::age(report.now.duration_since(m.time).as_secs())),
            if m.partial { ", partial" } else { "" }
        )),
        s.snapshots,
        c.snapshots
            .first()
            .map(|m| format!(" since {}", escape(&when(m.time))))
            .unwrap_or_default(),
        escape(&human_bytes(s.size_bytes)),
        escape(&human_bytes(s.written_since_snapshot_bytes)),
    );
    if let Some(since) = s.running_since {
        let _ = write!(
            b,
            "<dt>Running</dt><dd>a backup since {}</dd>",
            escape(&when(since))
        );
    }
    for r in &s.replicas {
        let _ = write!(
            b,
            "<dt>Replica {}</dt><dd>{}</dd>",
            escape(&r.replica),
            match (r.snapshots_behind, &r.newest) {
                (0, _) => "up to date".to_owned(),
                (n, Some(has)) => format!("{n} snapshot(s) behind (has {})", escape(has)),
                (n, None) => format!("{n} snapshot(s) behind (has none)"),
            }
        );
    }
    b.push_str("</dl>\n");

    // Snapshots.
    let partial = c.snapshots.iter().filter(|m| m.partial).count();
    let _ = writeln!(
        b,
        "<h2>Snapshots</h2>\n<p class=\"legend\"><span class=\"full\">snapshot</span><span class=\"part\">partial snapshot (some files left out)</span>{} snapshot(s), {partial} partial</p>",
        c.snapshots.len()
    );
    if c.snapshots.is_empty() {
        b.push_str("<p class=\"note\">No snapshot yet.</p>\n");
    }
    b.push_str(&svg::timeline("timeline", &c.snapshots, report.now, None));
    // A long history crowds the recent snapshots: a closer look at them.
    let month = jiff::SignedDuration::from_hours(24 * 30);
    if c.snapshots
        .first()
        .is_some_and(|m| report.now.duration_since(m.time) > month * 2)
    {
        b.push_str("<p class=\"sub\">The last 30 days:</p>\n");
        b.push_str(&svg::timeline(
            "recent",
            &c.snapshots,
            report.now,
            Some(month),
        ));
    }
    if !c.snapshots.is_empty() {
        b.push_str("<details><summary>Every snapshot, newest first</summary>\n<table class=\"snapshots\"><thead><tr><th>Snapshot</th><th>Age</th><th>Partial</th></tr></thead><tbody>\n");
        for m in c.snapshots.iter().rev() {
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(&m.name),
                escape(&status::age(report.now.duration_since(m.time).as_secs())),
                if m.partial { "partial" } else { "" }
            );
        }
        b.push_str("</tbody></table></details>\n");
    }

    // Space over time.
    b.push_str("<h2>Space over time</h2>\n");
    let points: Vec<(Timestamp, u64)> = report
        .samples
        .iter()
        .filter_map(|x| x.clients.get(&s.client).map(|&v| (x.time, v)))
        .collect();
    b.push_str(&samples_note(&points, "this client's space"));
    b.push_str(&svg::line_chart(
        &points,
        None,
        &format!("What the snapshots of {} cost on disk, over time", s.client),
    ));

    // Pruning.
    b.push_str("<h2>What pruning would take next</h2>\n");
    let p = &report.pruning;
    let _ = writeln!(
        b,
        "<p>Pruning runs when the store's free space falls below {}% (it is {:.1}% now) and deletes, across the whole store, the least important snapshot first until {}% is free; never a client's newest{}. Were it to run now, it would take these of this client's snapshots, in this order (the place is in the store's order of deletion, {} deletable in all):</p>",
        p.min_free_percent,
        report.store.free_percent,
        p.target_free_percent,
        if p.old_enough {
            String::new()
        } else {
            format!(
                ", and nothing at all until some snapshot is older than min_age ({}), which none is yet",
                escape(&p.min_age)
            )
        },
        p.deletable
    );
    if c.next_pruned.is_empty() {
        b.push_str("<p class=\"note\">None: it has no snapshot but its newest, which is never pruned.</p>\n");
    } else {
        b.push_str("<table class=\"prune\"><thead><tr><th class=\"num\">Place</th><th>Snapshot</th><th>Why</th></tr></thead><tbody>\n");
        for d in &c.next_pruned {
            let _ = writeln!(
                b,
                "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td class=\"reason\">{}{}</td></tr>",
                d.place,
                escape(&d.snapshot),
                escape(&d.why),
                if d.unreplicated {
                    " <span class=\"bad\">(not yet on every replica)</span>"
                } else {
                    ""
                }
            );
        }
        b.push_str("</tbody></table>\n");
        if c.more_pruned > 0 {
            let _ = writeln!(
                b,
                "<p class=\"sub\">and {} more of its snapshots after these.</p>",
                c.more_pruned
            );
        }
    }

    // Attempts.
    b.push_str("<h2>Last attempts</h2>\n");
    match &s.last_attempt {
        None => b.push_str("<p class=\"note\">None recorded yet.</p>\n"),
        Some(a) => {
            let _ = writeln!(
                b,
                "<table class=\"attempts\"><thead><tr><th>When</th><th>Request</th><th>Result</th><th>Reason</th></tr></thead><tbody><tr><td class=\"when\">{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td></tr></tbody></table>",
                escape(&when(a.time)),
                escape(&a.request),
                if a.ok {
                    "ok"
                } else {
                    "<span class=\"bad\">failed</span>"
                },
                a.reason.as_deref().map(escape).unwrap_or_default()
            );
        }
    }
    b.push_str("<p class=\"note\">The server keeps each client's last attempt only; every request, refusal and deletion is in its log, <code>.byteback/server.log</code>, and the system log.</p>\n");
    b.push_str(&footer(report));
    page(&format!("byteback: {}", s.client), &b, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_are_plain_and_distinct() {
        assert_eq!(page_name("host.example"), "client-host.example.html");
        assert_eq!(page_name("a_b-c"), "client-a_b-c.html");
        assert_eq!(page_name("../x"), "client-..~2Fx.html");
        assert_eq!(page_name("a\"<b>"), "client-a~22~3Cb~3E.html");
        assert_eq!(page_name("a~2E"), "client-a~7E2E.html");
        assert_ne!(page_name("a~2E"), page_name("a."));
        assert!(is_page_name(&page_name("x")));
        assert!(!is_page_name("index.html"));
    }
}
