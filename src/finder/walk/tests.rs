//! Tests of the walk, and of fake-super metadata read from real files, on
//! scratch trees (which need a filesystem with user xattrs).

use super::*;
use crate::finder::meta::{S_IFLNK, S_IFMT, STAT_XATTR, mode_string, read_meta};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;

fn pat(p: &str) -> Pattern {
    Pattern::parse(p.as_bytes()).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A scratch tree, removed when dropped. On a filesystem with user
/// xattrs: the temp dir if it has them, else /var/tmp.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        // Unique per process and per tree, as tests run in parallel.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("byteback-listing-{tag}-{}-{n}", std::process::id());
        for base in [std::env::temp_dir(), PathBuf::from("/var/tmp")] {
            let dir = base.join(&name);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            if rustix::fs::lsetxattr(&dir, "user.probe", b"1", rustix::fs::XattrFlags::empty())
                .is_ok()
            {
                return Tree(dir);
            }
            fs::remove_dir_all(&dir).unwrap();
        }
        panic!("no filesystem with user xattrs for the tests");
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.path(rel)).unwrap();
        self
    }

    fn file(&self, rel: &str, content: &[u8]) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        self
    }

    fn xattr(&self, rel: &str, value: &str) -> &Self {
        let flags = rustix::fs::XattrFlags::empty();
        rustix::fs::lsetxattr(self.path(rel), STAT_XATTR, value.as_bytes(), flags).unwrap();
        self
    }

    /// Every match of `patterns`, and the directories read on the way.
    fn walk(&self, patterns: &[&[u8]]) -> (Vec<Found>, Vec<String>) {
        let patterns: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        let mut walk = Walk::new(&self.0, &patterns).unwrap();
        let found = walk.by_ref().map(|r| r.unwrap()).collect();
        let reads = walk
            .reads
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect();
        (found, reads)
    }

    fn paths(&self, patterns: &[&str]) -> Vec<String> {
        let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
        let (found, _) = self.walk(&patterns);
        found
            .iter()
            .map(|f| String::from_utf8_lossy(&f.path).into_owned())
            .collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sample() -> Tree {
    let t = Tree::new("sample");
    t.file("/etc/nginx/nginx.conf", b"x")
        .file("/etc/nginx/sites/default", b"x")
        .file("/etc/passwd", b"root")
        .file("/etc/hosts", b"h")
        .file("/home/alice/.bashrc", b"a")
        .file("/home/alice/notes", b"n")
        .file("/home/alice/.cache/x", b"c")
        .file("/home/bob/.bashrc", b"b")
        .file("/home/bob/src/x", b"x")
        .file("/home/bob.old/x", b"x")
        .file("/home/bob-x", b"x")
        .file("/home/.hidden/x", b"x")
        .dir("/usr/share/doc");
    t
}

/// Every path under `dir`, found with std and no symlink followed.
fn brute_force(root: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
    for entry in
        fs::read_dir(root.join(OsStr::from_bytes(rel.get(1..).unwrap_or_default()))).unwrap()
    {
        let entry = entry.unwrap();
        let path = [rel, b"/", entry.file_name().as_bytes()].concat();
        let path = if rel == b"/" {
            path[1..].to_vec()
        } else {
            path
        };
        out.push(path.clone());
        if entry.file_type().unwrap().is_dir() {
            brute_force(root, &path, out);
        }
    }
}

#[test]
fn walk_agrees_with_brute_force() {
    let t = sample();
    let names = ["a", "b", ".a", "a.b", "ab", "b-"];
    let mut seed = 7u64;
    for _ in 0..150 {
        let mut path = String::new();
        for _ in 0..=(seed % 4) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            path = format!("{path}/{}", names[(seed >> 33) as usize % names.len()]);
        }
        // A name may already be a file; then this one is skipped.
        let _ = fs::create_dir_all(t.path(&path));
        let _ = fs::write(t.path(&format!("{path}/f{}", seed % 3)), b"x");
    }
    symlink("a", t.path("/a/l")).unwrap();
    let mut all = vec![b"/".to_vec()];
    brute_force(&t.0, b"/", &mut all);
    all.sort();
    let patterns = [
        "/**",
        "/a/**",
        "/**/a",
        "/**/f?",
        "/*/*",
        "/.a/**/f0",
        "/{a,b}/*/**/f[!1]",
        "/**/.a/*",
        "/a{,/b}/**/f1",
        "/*b*/**",
        "/[!a]*/**",
        "/a/l",
        "/a/l/**",
        "/{*,.*}/{*,.*}",
        "/",
    ];
    for p in patterns {
        let pattern = pat(p);
        let want: Vec<&Vec<u8>> = all.iter().filter(|x| pattern.matches(x)).collect();
        let (found, _) = t.walk(&[p.as_bytes()]);
        let got: Vec<&Vec<u8>> = found.iter().map(|f| &f.path).collect();
        assert_eq!(got, want, "{p}");
    }
    let both = t.walk(&[b"/**/f?", b"/a/**"]).0;
    let want: Vec<&Vec<u8>> = all
        .iter()
        .filter(|x| pat("/**/f?").matches(x) || pat("/a/**").matches(x))
        .collect();
    assert_eq!(both.iter().map(|f| &f.path).collect::<Vec<_>>(), want);
}

#[test]
fn a_shared_cache_reads_unchanged_directories_once() {
    let t = sample();
    let patterns = [Pattern::parse(b"/home/**").unwrap()];
    let cache = DirCache::shared();
    let walk_once = || {
        let mut walk = Walk::with_cache(&t.0, &patterns, Some(cache.clone())).unwrap();
        let found: Vec<Vec<u8>> = walk.by_ref().map(|r| r.unwrap().path).collect();
        (found, walk.reads.len())
    };
    let (first, first_reads) = walk_once();
    assert!(first_reads > 1);
    // Nothing changed: every listing comes from the cache, same result.
    assert_eq!(walk_once(), (first.clone(), 0));
    // A directory whose entries change has a new ctime: read again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.file("/home/alice/new-file", b"x");
    let (again, reads) = walk_once();
    assert_eq!(reads, 1);
    assert_eq!(again.len(), first.len() + 1);
    assert!(again.contains(&b"/home/alice/new-file".to_vec()));
}

#[test]
fn walk_reads_only_what_patterns_need() {
    let t = sample();
    let (found, reads) = t.walk(&[b"/etc/nginx/*"]);
    let paths: Vec<_> = found.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        paths,
        [
            b"/etc/nginx/nginx.conf".to_vec(),
            b"/etc/nginx/sites".to_vec()
        ]
    );
    assert_eq!(reads, ["/etc/nginx"]);

    let (found, reads) = t.walk(&[b"/etc/passwd", b"/etc/nope", b"/nope/x", b"/etc/passwd/x"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, b"/etc/passwd");
    assert!(reads.is_empty(), "{reads:?}");

    assert_eq!(t.walk(&[b"/home/*/.bashrc"]).1, ["/home"]);
    let (_, reads) = t.walk(&[b"/home/**/x"]);
    // In byte order of the paths, so bob.old comes before bob's subtree.
    assert_eq!(
        reads,
        [
            "/home",
            "/home/alice",
            "/home/bob.old",
            "/home/bob",
            "/home/bob/src"
        ]
    );
    assert_eq!(t.walk(&[b"/x/**", b"/nope"]).1, Vec::<String>::new());
}

#[test]
fn walk_order_and_dedup() {
    let t = sample();
    let got = t.paths(&["/home/**", "/home/bob/**", "/home/{bob,alice}/.bashrc"]);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(got, sorted, "not in byte order or duplicated");
    assert_eq!(
        got,
        [
            "/home",
            "/home/alice",
            "/home/alice/.bashrc",
            "/home/alice/notes",
            "/home/bob",
            "/home/bob-x",
            "/home/bob.old",
            "/home/bob.old/x",
            "/home/bob/.bashrc",
            "/home/bob/src",
            "/home/bob/src/x",
        ]
    );
    assert_eq!(t.paths(&["/"]), ["/"]);
    assert_eq!(t.paths(&[]), Vec::<String>::new());
    assert_eq!(
        t.paths(&["/home/{*,.*}/x"]),
        ["/home/.hidden/x", "/home/bob.old/x"]
    );
}

#[test]
fn walk_stops_on_break() {
    let t = sample();
    let patterns = [pat("/**")];
    let mut seen = Vec::new();
    walk(
        &t.0,
        &patterns,
        |w| panic!("{w}"),
        |f| {
            seen.push(f.path);
            if seen.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(
        seen,
        [b"/".to_vec(), b"/etc".to_vec(), b"/etc/hosts".to_vec()]
    );
    assert!(
        walk(
            &t.path("/nope"),
            &patterns,
            |_| {},
            |_| ControlFlow::Continue(())
        )
        .is_err()
    );
}

#[test]
fn walk_never_follows_symlinks() {
    let t = sample();
    let outside = Tree::new("outside");
    outside.file("/secret/key", b"k");
    symlink(outside.path("/secret"), t.path("/home/evil")).unwrap();
    symlink(t.path("/etc"), t.path("/home/etclink")).unwrap();
    symlink("../../../../../../../../", t.path("/up")).unwrap();
    let (found, reads) = t.walk(&[
        b"/home/*",
        b"/home/*/*",
        b"/home/evil/key",
        b"/up/**",
        b"/home/etclink/passwd",
    ]);
    let evil = found.iter().find(|f| f.path == b"/home/evil").unwrap();
    assert_eq!(evil.meta.mode & S_IFMT, S_IFLNK);
    assert_eq!(
        evil.meta.symlink_target.as_deref(),
        Some(outside.path("/secret").as_os_str().as_bytes())
    );
    assert_eq!(
        evil.meta.size,
        outside.path("/secret").as_os_str().len() as u64
    );
    assert!(
        found
            .iter()
            .all(|f| !f.path.starts_with(b"/home/evil/") && !f.path.starts_with(b"/home/etclink/"))
    );
    assert!(found.iter().all(|f| !f.path.starts_with(b"/up/")));
    assert!(found.iter().any(|f| f.path == b"/home/etclink"));
    assert!(found.iter().any(|f| f.path == b"/up"));
    assert!(
        !reads
            .iter()
            .any(|r| r.contains("evil") || r.contains("etclink") || r.starts_with("/up")),
        "{reads:?}"
    );
    // The root itself must not be a symlink either.
    symlink(&t.0, outside.path("/root")).unwrap();
    assert!(Walk::new(&outside.path("/root"), &[pat("/**")]).is_err());
}

#[test]
fn walk_hostile_names() {
    let t = sample();
    let names: [&[u8]; 4] = [b"new\nline", b"tab\there", b"\xff\xfe", b"-rf"];
    for n in names {
        let p = t.path("/home/bob").join(OsStr::from_bytes(n));
        fs::write(p, b"x").unwrap();
    }
    let patterns = [pat("/home/bob/*")];
    let mut paths = Vec::new();
    walk(
        &t.0,
        &patterns,
        |w| panic!("{w}"),
        |f| {
            paths.push(f.path);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    // Each travels as one line and arrives intact: `protocol::wire`'s
    // tests, on these names.
    assert_eq!(
        paths,
        [
            &b"/home/bob/-rf"[..],
            b"/home/bob/new\nline",
            b"/home/bob/src",
            b"/home/bob/tab\there",
            b"/home/bob/\xff\xfe"
        ]
    );
    let p = Pattern::parse(b"/home/bob/new\nline").unwrap();
    assert_eq!(t.walk(&[p.as_bytes()]).0.len(), 1);
}

#[test]
fn fake_super_metadata() {
    let t = sample();
    t.file("/bin/su", b"elf")
        .xattr("/bin/su", "104755 0,0 0:0")
        .file("/home/alice/link", b"../bob/.bashrc")
        .xattr("/home/alice/link", "120777 0,0 1000:1000")
        .file("/dev/null", b"")
        .xattr("/dev/null", "20666 1,3 0:0")
        .file("/dev/sda", b"")
        .xattr("/dev/sda", "60660 8,0 0:6")
        .file("/run/fifo", b"")
        .xattr("/run/fifo", "10640 0,0 0:4")
        .file("/run/sock", b"")
        .xattr("/run/sock", "140777 0,0 33:33")
        .xattr("/home/alice", "40750 0,0 1000:100")
        .file("/bad/garbage", b"")
        .xattr("/bad/garbage", "hello")
        .file("/bad/dirmode", b"")
        .xattr("/bad/dirmode", "40755 0,0 0:0")
        .file("/bad/longlink", &[b'a'; 5000])
        .xattr("/bad/longlink", "120777 0,0 0:0");
    fs::set_permissions(t.path("/etc/hosts"), fs::Permissions::from_mode(0o604)).unwrap();

    let meta = |p: &str| read_meta(&t.path(p)).unwrap();
    let su = meta("/bin/su");
    assert_eq!(
        (mode_string(su.mode), su.uid, su.gid, su.size),
        ("-rwsr-xr-x".into(), 0, 0, 3)
    );
    let link = meta("/home/alice/link");
    assert_eq!(mode_string(link.mode), "lrwxrwxrwx");
    assert_eq!((link.uid, link.size), (1000, 14));
    assert_eq!(link.symlink_target.as_deref(), Some(&b"../bob/.bashrc"[..]));
    let null = meta("/dev/null");
    assert_eq!(
        (mode_string(null.mode), null.rdev),
        ("crw-rw-rw-".into(), Some((1, 3)))
    );
    let sda = meta("/dev/sda");
    assert_eq!(
        (mode_string(sda.mode), sda.rdev, sda.gid),
        ("brw-rw----".into(), Some((8, 0)), 6)
    );
    assert_eq!(mode_string(meta("/run/fifo").mode), "prw-r-----");
    assert_eq!(meta("/run/fifo").rdev, None);
    assert_eq!(mode_string(meta("/run/sock").mode), "srwxrwxrwx");
    let alice = meta("/home/alice");
    assert_eq!(
        (mode_string(alice.mode), alice.uid, alice.gid),
        ("drwxr-x---".into(), 1000, 100)
    );
    // No xattr: the stored file's own lstat.
    let hosts = meta("/etc/hosts");
    let st = fs::symlink_metadata(t.path("/etc/hosts")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (hosts.mode, hosts.uid, hosts.size, hosts.mtime),
        (0o100604, st.uid(), 1, st.mtime())
    );
    for bad in ["/bad/garbage", "/bad/dirmode", "/bad/longlink"] {
        let e = read_meta(&t.path(bad)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad}: {e}");
    }

    // The walk gives the same, and skips corrupt entries with a warning.
    let patterns = [pat("/{bin,dev,run,bad}/*"), pat("/home/alice{,/link}")];
    let (mut found, mut warnings) = (Vec::new(), Vec::new());
    walk(
        &t.0,
        &patterns,
        |w| warnings.push(w),
        |f| {
            found.push(f);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let modes: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                mode_string(f.meta.mode),
                String::from_utf8_lossy(&f.path)
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            "-rwsr-xr-x /bin/su",
            "crw-rw-rw- /dev/null",
            "brw-rw---- /dev/sda",
            "drwxr-x--- /home/alice",
            "lrwxrwxrwx /home/alice/link",
            "prw-r----- /run/fifo",
            "srwxrwxrwx /run/sock",
        ]
    );
    let warned: Vec<&[u8]> = warnings.iter().map(|w| w.path.as_slice()).collect();
    assert_eq!(
        warned,
        [&b"/bad/dirmode"[..], b"/bad/garbage", b"/bad/longlink"]
    );
    assert!(
        warnings[1]
            .to_string()
            .contains("corrupt user.rsync.%stat xattr \"hello\""),
        "{}",
        warnings[1]
    );
}

#[test]
fn walk_depth_is_bounded() {
    let t = Tree::new("deep");
    let deep = "/d".repeat(MAX_DEPTH + 5);
    t.dir(&deep);
    let patterns = [pat("/**")];
    let (mut found, mut warnings) = (0, Vec::new());
    let on_found = |_| {
        found += 1;
        ControlFlow::Continue(())
    };
    walk(&t.0, &patterns, |w| warnings.push(w), on_found).unwrap();
    // The root, then one directory per level the walk may open.
    assert_eq!(found, MAX_DEPTH + 1);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "/d".repeat(MAX_DEPTH).into_bytes());
    assert!(
        warnings[0]
            .to_string()
            .contains("nested more than 256 deep")
    );
}

#[test]
fn walk_real_specials_and_unreadable() {
    let t = sample();
    fs::create_dir_all(t.path("/run/dir")).unwrap();
    rustix::fs::mknodat(
        CWD,
        t.path("/run/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    // A real fifo is listed without being opened (which would block).
    let (found, _) = t.walk(&[b"/run/*"]);
    assert_eq!(found.len(), 2);
    assert_eq!(mode_string(found[1].meta.mode), "prw-r-----");
    // An unreadable directory is a warning, and the walk goes on. (Root
    // ignores permissions, so this only bites when not run as root.)
    fs::set_permissions(t.path("/home/bob"), fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read_dir(t.path("/home/bob")).is_err() {
        let patterns = [pat("/home/*/*")];
        let mut warnings = Vec::new();
        let mut n = 0;
        walk(
            &t.0,
            &patterns,
            |w| warnings.push(w.path),
            |_| {
                n += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(warnings, [b"/home/bob".to_vec()]);
        assert!(n > 0);
    }
    fs::set_permissions(t.path("/home/bob"), fs::Permissions::from_mode(0o755)).unwrap();
}
