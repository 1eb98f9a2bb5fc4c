//! End to end: `byteback-server report` on a store with clients in
//! different states (one backed up over ssh and then refused for a hostile
//! command, one with a history of snapshots taken by hand, one never
//! backed up), its pages loaded in a real headless browser, Debian's
//! `chromium`: the DOM after the overview's script ran lists each client
//! with its state and sorts by a column; a client's page has one timeline
//! mark per snapshot and its space chart drawn through every sample; the
//! hostile words stay text. Needs `chromium` (install.sh installs it): in
//! CI its absence fails the test, elsewhere it is skipped loudly.

use byteback_testbed as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::world::{World, show, stdout};

/// A command that a client's key is refused for, quoted in the reason.
const HOSTILE: &str = "byteback <script>alert(1)</script><img src=x onerror=alert(2)>";

fn ago(minutes: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Headless Chromium with a profile of its own, or `None` (said loudly;
/// a failure under CI) when it is not installed.
struct Browser {
    program: PathBuf,
    profile: PathBuf,
}

impl Browser {
    fn find(area: &Path) -> Option<Browser> {
        let program = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin")])
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file());
        let Some(program) = program else {
            let msg = "chromium is not installed (apt-get install chromium; install.sh does)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("\n\n*** THE REPORT TEST CANNOT RUN IN CI: {msg} ***\n");
            }
            eprintln!("\n*** SKIPPED: {msg} ***\n");
            return None;
        };
        Some(Browser {
            program,
            profile: area.join("chromium-profile"),
        })
    }

    /// Runs chromium headless on `url` with `extra` options (at most two
    /// minutes); its stdout.
    fn run(&self, extra: &[&str], url: &str) -> String {
        let out = Command::new("timeout")
            .arg("120")
            .arg(&self.program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(out.status.success(), "chromium on {url}: {}", show(&out));
        stdout(&out)
    }

    /// The page's DOM once loaded and its scripts have run.
    fn dom(&self, url: &str) -> String {
        self.run(&["--virtual-time-budget=5000", "--dump-dom"], url)
    }
}

/// The `data-client` of each overview row, in the DOM's order.
fn row_order(dom: &str) -> Vec<String> {
    dom.split("<tr data-client=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The element `<TAG id="ID" …>…</TAG>` in a serialized DOM.
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<{tag} id=\"{id}\""))
        .unwrap_or_else(|| panic!("no <{tag} id={id}> in {dom}"));
    let end = dom[start..].find(&format!("</{tag}>")).unwrap() + start;
    &dom[start..end]
}

/// The points of a chart's line, each `x,y` as numbers.
fn series_points(dom: &str) -> Vec<(f64, f64)> {
    let rest = dom
        .split("<polyline class=\"series\" points=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no chart line in {dom}"));
    rest.split('"')
        .next()
        .unwrap()
        .split(' ')
        .map(|xy| {
            let (x, y) = xy.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// `report` on a store with a client backed up over ssh and then refused
/// for a hostile command, one with three snapshots (one partial) and one
/// never backed up, loaded in headless Chromium: the overview's DOM lists
/// each client with its state, worst first, and its script sorts by a
/// column named in the address; a client's page has one timeline mark per
/// snapshot, the partial one apart, and its space chart drawn through
/// every sample; the hostile command is text, never an element; an output
/// inside the store is refused; `status` adds no second sample within ten
/// minutes; a screenshot is a PNG of the window's size.
#[test]
fn the_report_in_a_browser() {
    let Some(w) = World::new("report") else {
        return;
    };
    let Some(browser) = Browser::find(&w.area.path) else {
        return;
    };
    // failing.example: backs up over ssh, then sends a hostile command,
    // refused with the command quoted in the reason.
    let failing = w.enroll("failing.example");
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    w.backup_ok();
    let out = w.raw_ssh(Some(HOSTILE));
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    // ok.example: three snapshots taken by hand, the middle one partial.
    let snaps = [ago(3 * 24 * 60), ago(2 * 24 * 60), ago(30)];
    w.add_client_with_file("ok.example", "f", "x\n", &snaps[0]);
    for at in &snaps[1..] {
        let out = w.server(&["snapshot", "--client", "ok.example", "--at", at]);
        assert!(out.status.success(), "{}", show(&out));
    }
    let marker = w.store().join(format!("ok.example/{}.partial", snaps[1]));
    std::fs::write(&marker, "/etc/shadow\n").unwrap();
    std::os::unix::fs::chown(&marker, Some(w.user.uid), Some(w.user.gid)).unwrap();
    // never.example: enrolled, nothing yet.
    let key = support::ssh_keygen(&w.area.path.join("never-key"));
    let mut args = vec!["new-client", "--name", "never.example"];
    args.extend(key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    // Two earlier space samples, as status runs would have left them.
    let history = w.store().join(".byteback/space-history.jsonl");
    let sample = |minutes: i64, size: u64| {
        format!(
            "{{\"version\":1,\"time\":\"{}\",\"total_bytes\":536870912,\"free_bytes\":400000000,\"clients\":{{\"failing.example\":{size},\"ok.example\":{size}}}}}\n",
            ago(minutes)
        )
    };
    std::fs::write(&history, sample(120, 1000) + &sample(60, 2000)).unwrap();
    std::os::unix::fs::chown(&history, Some(w.user.uid), Some(w.user.gid)).unwrap();

    // Never inside the store, where a directory would look like a client.
    let inside = w.store().join("report");
    let out = w.server(&["report", "--output", &inside.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(!inside.exists());

    let dir = w.area.path.join("report-out");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(w.user.uid), Some(w.user.gid)).unwrap();
    let out = w.server(&["report", "--output", &dir.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    for page in [
        "index.html",
        "client-failing.example.html",
        "client-ok.example.html",
        "client-never.example.html",
    ] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    // report added a sample; status, within ten minutes, adds none.
    let samples = || std::fs::read_to_string(&history).unwrap().lines().count();
    assert_eq!(samples(), 3);
    let out = w.server(&["status"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(samples(), 3);

    // The overview: every client with its state, worst first; the script
    // made the columns sortable.
    let index = format!("file://{}", dir.join("index.html").display());
    let dom = browser.dom(&index);
    for (client, state) in [
        (failing.as_str(), "failing"),
        ("never.example", "never"),
        ("ok.example", "ok"),
    ] {
        assert!(
            dom.contains(&format!(
                "<tr data-client=\"{client}\" data-state=\"{state}\">"
            )),
            "{client} {state}:\n{dom}"
        );
        assert!(
            dom.contains(&format!("<span class=\"state {state}\">{state}</span>")),
            "{state}:\n{dom}"
        );
    }
    assert_eq!(
        row_order(&dom),
        ["failing.example", "never.example", "ok.example"]
    );
    assert!(
        dom.contains("<table id=\"clients\" data-sortable=\"yes\">"),
        "{dom}"
    );
    assert!(
        dom.contains("<th data-key=\"client\"><button type=\"button\">Client</button></th>"),
        "{dom}"
    );
    // Sorted by a column from the address: client names, descending.
    let sorted = browser.dom(&format!("{index}#sort=-client"));
    assert_eq!(
        row_order(&sorted),
        ["ok.example", "never.example", "failing.example"]
    );
    // The hostile command is text: no element of its own, and the only
    // script is the page's sorter.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");

    // ok.example's page: a mark per snapshot, the partial one apart, and
    // the space chart through the three samples, left to right.
    let page = format!("file://{}", dir.join("client-ok.example.html").display());
    let dom = browser.dom(&page);
    let timeline = element(&dom, "svg", "timeline");
    assert_eq!(
        timeline.matches("<circle class=\"mark").count(),
        3,
        "{timeline}"
    );
    assert_eq!(
        timeline.matches("<circle class=\"mark partial\"").count(),
        1
    );
    for name in &snaps {
        assert!(
            timeline.contains(&format!("data-snapshot=\"{name}\"")),
            "{name}: {timeline}"
        );
    }
    let points = series_points(&dom);
    assert_eq!(points.len(), 3, "{dom}");
    assert!(points.windows(2).all(|p| p[0].0 < p[1].0), "{points:?}");
    // The two older snapshots are what pruning would take, oldest last.
    assert_eq!(dom.matches("<tr><td class=\"num\">").count(), 2, "{dom}");

    // The failing client's page: its refusal and the reason, as text.
    let page = format!(
        "file://{}",
        dir.join("client-failing.example.html").display()
    );
    let dom = browser.dom(&page);
    assert!(dom.contains("command not allowed"), "{dom}");
    assert!(!dom.contains("<img") && !dom.contains("<script"), "{dom}");

    // A screenshot by the same browser: a PNG of the window's size.
    let png = w.area.path.join("report.png");
    browser.run(
        &[
            "--window-size=1200,800",
            &format!("--screenshot={}", png.display()),
        ],
        &index,
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 800));
}
