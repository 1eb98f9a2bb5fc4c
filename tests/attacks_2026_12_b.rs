//! Attacks of December 2026 (second round) on `move-client`'s
//! `replica-adopt` and the HTML report, by key holders assumed hostile, on
//! a real sshd, rsync and btrfs store.
//!
//! Each attack is a regression test asserting that it is stopped. One
//! succeeded when first written: a primary could adopt a client with
//! another client's key written in another (non-canonical) encoding, which
//! OpenSSH reads as the same key, so one key served two clients; keys are
//! now read only in the one form ssh-keygen writes (`server::keys`).

use byteback_testbed as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::world::{World, show, stderr, stdout};

const SNAPSHOT: &str = "2026-01-01T00:00:00Z";

/// ssh's options for the key at `key` to the world's server.
fn options(w: &World, key: &Path) -> Vec<String> {
    support::ssh_options_for_key(key, w.sshd.port)
}

/// ssh into the world's server with the key at `key`, running `command`.
fn ssh_with(w: &World, key: &Path, command: &str) -> Output {
    let options = options(w, key);
    Command::new("ssh")
        .args(options)
        .arg(format!("{}@127.0.0.1", w.user.name))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

/// rsync of `dir`'s contents into `remote` with the key at `key`.
fn rsync_with(w: &World, key: &Path, dir: &Path, remote: &str) -> Output {
    let options = options(w, key);
    Command::new("rsync")
        .args(["-a", "--rsh"])
        .arg(format!("ssh {}", options.join(" ")))
        .arg(format!("{}/", dir.display()))
        .arg(format!("{}@127.0.0.1:{remote}", w.user.name))
        .stdin(Stdio::null())
        .output()
        .expect("run rsync")
}

/// A new RSA key pair at `path`; its public key as `TYPE BASE64`.
fn rsa_key(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "x", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The same RSA key, written with a needless zero before its exponent:
/// OpenSSH reads it as the same key.
fn reencoded(public: &str) -> String {
    let (kind, blob) = public.split_once(' ').unwrap();
    let script = "import base64,struct,sys\n\
d=base64.b64decode(sys.argv[1]);o=b'';i=0;n=0\n\
while i<len(d):\n l=struct.unpack('>I',d[i:i+4])[0];f=d[i+4:i+4+l];i+=4+l\n f=b'\\x00\\x00'+f if n==1 else f;n+=1\n o+=struct.pack('>I',len(f))+f\n\
print(base64.b64encode(o).decode())";
    let out = Command::new("python3")
        .args(["-c", script, blob])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    format!("{kind} {}", stdout(&out).trim())
}

/// A primary's replica key for `clients`, enrolled on `w`; its key path.
fn replica_key(w: &World, primary: &str, clients: &str) -> PathBuf {
    let key = w.area.path.join(format!("{primary}-key"));
    let public = support::ssh_keygen(&key);
    let mut args = vec![
        "new-client",
        "--replica",
        "--name",
        primary,
        "--clients",
        clients,
    ];
    args.extend(public.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    key
}

/// A replicated copy of `client` with one snapshot, as a primary sends it.
fn replicate(w: &World, key: &Path, client: &str) {
    let dir = w.area.path.join(format!("copy-{client}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), "a primary's copy\n").unwrap();
    let out = rsync_with(w, key, &dir, &format!("{client}/current/"));
    assert!(out.status.success(), "{}", show(&out));
    let out = ssh_with(
        w,
        key,
        &format!("byteback replica-snapshot {client} {SNAPSHOT}"),
    );
    assert!(out.status.success(), "{}", show(&out));
}

/// A hostile primary adopts a client it may adopt with a victim client's
/// RSA key, re-encoded (a zero before the exponent) so that its blob is
/// not the victim's but OpenSSH reads the same key: one key would then
/// serve two clients (sshd takes the first line that matches, so the
/// victim's machine could land in the adopted client). Found and fixed:
/// refused, authorized_keys unchanged; and names with tricks (`..`,
/// `__`, very long, unicode) are refused before anything is read. A
/// genuine fresh RSA key still adopts, once.
#[test]
fn a_reencoded_key_of_another_client_is_not_a_new_key() {
    let Some(w) = World::new("atkb-reencode") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    // The victim, enrolled with an RSA key.
    let victim = rsa_key(&w.area.path.join("victim-key"));
    let mut args = vec!["new-client", "--name", "victim.example"];
    args.extend(victim.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let key = replica_key(&w, "prim", "web1");
    replicate(&w, &key, "web1");
    let authorized = w.store().join(".ssh/authorized_keys");
    let before = std::fs::read_to_string(&authorized).unwrap();
    let twin = reencoded(&victim);
    assert_ne!(twin, victim);
    // ssh-keygen reads both as one key.
    let fingerprint = |public: &str| {
        let file = w.area.path.join("fp.pub");
        std::fs::write(&file, format!("{public}\n")).unwrap();
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        stdout(&out).split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(fingerprint(&twin), fingerprint(&victim));
    let out = ssh_with(&w, &key, &format!("byteback replica-adopt web1 {twin}"));
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(
        stderr(&out).contains("not in the one form"),
        "{}",
        show(&out)
    );
    assert_eq!(std::fs::read_to_string(&authorized).unwrap(), before);
    assert!(w.store().join("prim__web1").exists());

    // Names with tricks: refused by the parser, nothing changed.
    let fresh = rsa_key(&w.area.path.join("fresh-key"));
    let long = "a".repeat(300);
    for name in [
        "..",
        "../web1",
        "prim__web1",
        "web1/..",
        "wéb1",
        long.as_str(),
        "-web1",
    ] {
        let out = ssh_with(&w, &key, &format!("byteback replica-adopt {name} {fresh}"));
        assert_eq!(out.status.code(), Some(6), "{name}: {}", show(&out));
    }
    assert_eq!(std::fs::read_to_string(&authorized).unwrap(), before);

    // A genuine key adopts, with the line the replica writes, once.
    let out = ssh_with(&w, &key, &format!("byteback replica-adopt web1 {fresh}"));
    assert!(out.status.success(), "{}", show(&out));
    let after = std::fs::read_to_string(&authorized).unwrap();
    let added: Vec<&str> = after.lines().filter(|l| !before.contains(*l)).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        added[0].starts_with("restrict,command=\"")
            && added[0].contains(" --client web1\" ssh-rsa "),
        "{}",
        added[0]
    );
    let again = ssh_with(&w, &key, &format!("byteback replica-adopt web1 {fresh}"));
    assert_eq!(again.status.code(), Some(6), "{}", show(&again));
    // The victim's key still logs in as the victim only.
    let out = ssh_with(&w, &w.area.path.join("victim-key"), "byteback ping");
    assert!(
        stdout(&out).contains("client=victim.example\n"),
        "{}",
        show(&out)
    );
}

/// A client sends requests whose refusal quotes its own words as HTML and
/// script (a snapshot name, a pattern); the reason is recorded as its last
/// attempt and shown by `byteback-server report`. Stopped: every page
/// holds the text escaped, never the markup.
#[test]
fn a_clients_words_in_a_refusal_stay_text_in_the_report() {
    let Some(w) = World::new("atkb-report") else {
        return;
    };
    w.enroll("html.example");
    let key = w.client_dir.join("key");
    for command in [
        "byteback incremental <script>alert(1)</script>",
        "byteback incremental \"><img/src=x/onerror=alert(2)>",
        "byteback digest <svg/onload=alert(3)> /etc",
    ] {
        let out = ssh_with(&w, &key, command);
        assert!(!out.status.success(), "{command}: {}", show(&out));
    }
    let dir = w.area.path.join("report-out");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(w.user.uid), Some(w.user.gid)).unwrap();
    let out = w.server(&["report", "--output", &dir.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let mut pages = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "html") {
            continue;
        }
        pages += 1;
        let html = std::fs::read_to_string(&path).unwrap();
        for bad in ["<script>alert", "<img", "<svg/", "onerror=alert"] {
            assert!(!html.contains(bad), "{bad:?} in {}", path.display());
        }
    }
    assert!(pages >= 2, "index and the client's page");
}
