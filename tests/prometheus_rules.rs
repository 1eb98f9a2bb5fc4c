//! The Prometheus rules the packages ship
//! (packaging/prometheus/byteback.rules.yml): valid for `promtool check
//! rules`, passing their own unit tests (`promtool test rules` on
//! byteback.rules.test.yml), and, end to end, written over figures that
//! `byteback-server status --prometheus` really exports: every metric a
//! rule reads is in a real store's file, and those figures, fed to
//! promtool, raise exactly the alerts the store's state calls for.
//!
//! promtool is Debian's `prometheus` package (./install.sh installs it);
//! only the binary is used, never a Prometheus server. Without it these
//! tests skip loudly, and fail under CI=true.

use byteback_testbed as support;
use support::days_ago;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::world::{World, show};

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus")
}

fn rules() -> PathBuf {
    packaging().join("byteback.rules.yml")
}

/// Whether promtool runs here; outside CI a missing one is a loud skip.
fn has_promtool() -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "promtool is missing (apt-get install prometheus, which ./install.sh and .ci/run install; only its promtool is used)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("\n*** SKIPPED: the Prometheus rules cannot be checked: {msg} ***\n");
    }
    ok
}

fn promtool(args: &[&str], file: &Path) -> Output {
    Command::new("promtool")
        .args(args)
        .arg(file)
        // promtool resolves a test file's rule_files from its own directory.
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap()
}

/// The shipped alert rules are valid Prometheus rules (`promtool check
/// rules`) and their unit tests pass (`promtool test rules`: each alert
/// fires on the recorded series it should, and only on those).
#[test]
fn promtool_checks_and_tests_the_shipped_rules() {
    if !has_promtool() {
        return;
    }
    let out = promtool(&["check", "rules"], &rules());
    assert!(out.status.success(), "promtool check rules: {}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("SUCCESS"), "{}", show(&out));
    let out = promtool(
        &["test", "rules"],
        &packaging().join("byteback.rules.test.yml"),
    );
    assert!(out.status.success(), "promtool test rules: {}", show(&out));
}

/// Every alert has a severity and says what is wrong and what to do; each
/// is unit-tested, firing and not.
#[test]
fn every_alert_is_annotated_and_tested() {
    let text = std::fs::read_to_string(rules()).unwrap();
    let tests = std::fs::read_to_string(packaging().join("byteback.rules.test.yml")).unwrap();
    let alerts: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    // Each alert's block, up to the next rule.
    for block in text.split("- alert: ").skip(1) {
        let block = block.split("\n      - ").next().unwrap();
        let name = block.lines().next().unwrap();
        for needed in ["severity: ", "summary: ", "description: "] {
            assert!(block.contains(needed), "{name} has no {needed}:\n{block}");
        }
    }
    for alert in alerts {
        let cases: Vec<&str> = tests
            .split("- eval_time: ")
            .skip(1)
            .filter(|case| case.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{alert} is never tested not firing"
        );
        assert!(
            cases.iter().any(|c| c.contains("- exp_labels: ")),
            "{alert} is never tested firing"
        );
    }
}

/// The Prometheus configurations docs/fleet-monitoring.md shows are valid
/// as printed (with the rules where the page says to copy them).
#[test]
fn the_guides_prometheus_configs_are_valid() {
    if !has_promtool() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/fleet-monitoring.md")).unwrap();
    let configs: Vec<&str> = guide
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("scrape_configs:"))
        .collect();
    assert_eq!(configs.len(), 2, "a single server's and the federation's");
    let dir = std::env::temp_dir().join(format!("byteback-promconfig-{}", support::unique()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, config) in configs.iter().enumerate() {
        let config = config.replace(
            "/etc/prometheus/byteback.rules.yml",
            &rules().to_string_lossy(),
        );
        let file = dir.join(format!("prometheus-{i}.yml"));
        std::fs::write(&file, &config).unwrap();
        let out = promtool(&["check", "config"], &file);
        assert!(out.status.success(), "{config}\n{}", show(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn now_minus(minutes: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One sample of a Prometheus text file: name, labels (`{...}` or empty),
/// value.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect(l);
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (name.to_owned(), labels.to_owned(), value.parse().expect(l))
        })
        .collect()
}

/// The store at the heart of the end-to-end test: a client in every state
/// the rules look at, a replica that holds nothing, a pruned snapshot it
/// never had, and min_free_percent above what the store has.
#[test]
fn the_rules_fire_on_what_status_really_exports() {
    let Some(w) = World::new("promrules") else {
        return;
    };
    if !has_promtool() {
        return;
    }
    // failing: backs up, then asks for a second snapshot inside the interval.
    let failing = w.enroll("failing.example");
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    w.backup_ok();
    let out = w.raw_ssh(Some("byteback complete"));
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    w.add_client_with_file("ok.example", "f", "x\n", &now_minus(30));
    // stale, with an older snapshot for pruning to take.
    w.add_client_with_file("stale.example", "f", "x\n", &days_ago(4));
    let out = w.server(&[
        "snapshot",
        "--client",
        "stale.example",
        "--at",
        &days_ago(3),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let key = support::ssh_keygen(&w.area.path.join("never-key"));
    let mut args = vec!["new-client", "--name", "never.example"];
    args.extend(key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    // A replica that holds nothing: the one snapshot pruning may take is
    // one it lacks.
    let replica = "[replicate]\nto = [\"byteback@replica.invalid\"]\n";
    w.server_config(replica);
    let out = w.server(&["prune", "--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(w.snapshots("stale.example").len(), 1);
    w.server_config(&format!(
        "min_free_percent = 99\ntarget_free_percent = 99.5\n{replica}"
    ));

    // (Where the backup user may write: its home, the store.)
    let prom = w.store().join("byteback-test.prom");
    let out = w.server(&["status", "--prometheus", &prom.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let text = std::fs::read_to_string(&prom).unwrap();
    let exported = samples(&text);

    // No rule reads a metric status does not write.
    let names: BTreeSet<&str> = exported.iter().map(|(n, _, _)| n.as_str()).collect();
    let rules_text = std::fs::read_to_string(rules()).unwrap();
    let read: BTreeSet<&str> = rules_text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("byteback_"))
        .collect();
    assert!(read.len() >= 10, "{read:?}");
    let missing: Vec<&&str> = read.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "the rules read {missing:?}, which status does not export:\n{text}"
    );

    // Those figures as Prometheus would scrape them for 28 hours (so that
    // every `for` has run out), shifted so that promtool's clock (from 0)
    // stands 27 hours in when they were gathered.
    let generated = exported
        .iter()
        .find(|(n, _, _)| n == "byteback_status_generated_timestamp_seconds")
        .expect("the generated time")
        .2;
    let at = 27.0 * 3600.0;
    let mut input = String::new();
    for (name, labels, value) in &exported {
        let value = match name.ends_with("_timestamp_seconds") {
            true => value - generated + at,
            false => *value,
        };
        let inner = labels.trim_start_matches('{').trim_end_matches('}');
        let sep = if inner.is_empty() { "" } else { "," };
        let _ = write!(
            input,
            "      - series: '{name}{{{inner}{sep}instance=\"backup1:9100\",job=\"node\"}}'\n        values: '{value}+0x1680'\n"
        );
    }
    // What the store's state calls for: by alert, client and severity.
    let expected = [
        ("BytebackClientSilent", "stale.example", "warning"),
        ("BytebackClientNeverBackedUp", "never.example", "warning"),
        ("BytebackClientFailing", failing.as_str(), "warning"),
        ("BytebackReplicaBehind", failing.as_str(), "warning"),
        ("BytebackReplicaBehind", "ok.example", "warning"),
        ("BytebackReplicaBehind", "stale.example", "warning"),
        ("BytebackPruneAlert", "", "critical"),
        ("BytebackStoreLowSpace", "", "warning"),
        ("BytebackUnreplicatedSnapshotPruned", "", "warning"),
    ];
    let mut samples_yaml = String::new();
    for (alert, client, severity) in expected {
        let client = match client {
            "" => String::new(),
            c => format!("client=\"{c}\","),
        };
        let _ = write!(
            samples_yaml,
            "          - labels: '{{alertname=\"{alert}\",{client}severity=\"{severity}\"}}'\n            value: 1\n"
        );
    }
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    promql_expr_test:\n      - expr: count by (alertname, client, severity) (ALERTS{{alertstate=\"firing\"}})\n        eval_time: 27h\n        exp_samples:\n{samples_yaml}",
        rules().display()
    );
    let file = w.area.path.join("from-status.test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = promtool(&["test", "rules"], &file);
    assert!(
        out.status.success(),
        "the alerts over real figures: {}\n--- the figures\n{text}",
        show(&out)
    );
}
