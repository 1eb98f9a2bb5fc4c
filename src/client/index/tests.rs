use super::*;

fn e(path: &str, ino: u64, mode: u32) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        dev: 1,
        ino,
        mode,
        uid: 0,
        gid: 0,
        nlink: 1,
        size: 10,
        mtime: 1_000_000_000,
        ctime: 1_000_000_000,
        unsure: false,
        short: false,
    }
}

const DIR: u32 = 0o040755;
const FILE: u32 = 0o100644;

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by(|a, b| cmp_paths(&a.path, &b.path));
    v
}

fn strings(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[test]
fn walk_order_is_by_component() {
    let mut paths = vec!["/a0", "/a-x", "/a/b", "/a", "/", "/a/b/c", "/ab"];
    paths.sort_by(|a, b| cmp_paths(a.as_bytes(), b.as_bytes()));
    assert_eq!(paths, ["/", "/a", "/a/b", "/a/b/c", "/a-x", "/a0", "/ab"]);
}

#[test]
fn round_trips_and_refuses_damage() {
    let mut entries = sorted(vec![
        e("/", 2, DIR),
        e("/etc", 3, DIR),
        e("/etc/hostname", 4, FILE),
        e("/etc/host\nname\u{ff}", 5, FILE),
    ]);
    entries[2].unsure = true;
    entries[3].mtime = -5;
    let index = Index {
        header: Header {
            snapshot: "2026-11-28T03:00:00Z".into(),
            fingerprint: "v1 /etc".into(),
            incrementals: 3,
            entries: 4,
            server_protocol: 6,
        },
        entries,
    };
    let bytes = index.encode();
    assert_eq!(Index::decode(&bytes), Some(index.clone()));
    // Any flipped byte, a truncation or an extension is no index.
    for at in [0, 30, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        assert_eq!(Index::decode(&bad), None, "byte {at}");
    }
    assert_eq!(Index::decode(&bytes[..bytes.len() - 3]), None);
    assert_eq!(Index::decode(b""), None);
    assert_eq!(Index::decode(b"garbage that is long enough"), None);
    let mut empty = Index {
        entries: vec![],
        ..index
    };
    empty.header.entries = 0;
    assert_eq!(Index::decode(&empty.encode()), Some(empty));
}

/// The index on disk is read from the file, not into memory: the records
/// read are those of the file that was checked, even once a new index has
/// been renamed over it, and a damaged file is no index.
#[test]
fn a_saved_index_is_read_from_its_open_file() {
    let scratch = crate::ScratchDir::new("index");
    let file = scratch.path().join("index");
    let entries: Vec<Entry> = (0..5000)
        .map(|i| e(&format!("/d{:02}/f{i:05}", i % 50), i + 10, FILE))
        .collect();
    let index = Index {
        header: Header {
            snapshot: "2026-11-28T03:00:00Z".into(),
            fingerprint: "v1 /".into(),
            incrementals: 1,
            entries: 0,
            server_protocol: 7,
        },
        entries: sorted(entries),
    };
    index.save(&file).unwrap();
    let stored = Stored::load(&file).expect("an intact index");
    assert_eq!(stored.header.entries, 5000);
    let newer = Index {
        entries: index.entries[..10].to_vec(),
        ..index.clone()
    };
    newer.save(&file).unwrap();
    assert_eq!(stored.entries().collect::<Vec<_>>(), index.entries);
    // Twice: each pass starts from the first record.
    assert_eq!(stored.entries().count(), 5000);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    assert!(Stored::load(&file).is_none(), "a flipped byte is no index");
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
    assert!(
        Stored::load(&file).is_none(),
        "a truncated file is no index"
    );
}

/// An index written before the header named the server's protocol is
/// still read: the protocol is not known (0), so the next backup pings.
#[test]
fn an_older_header_has_no_server_protocol() {
    let line = br#"{"snapshot":"2026-11-28T03:00:00Z","fingerprint":"v1 /etc","incrementals":2,"entries":0}"#;
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(line);
    body.push(b'\n');
    let sum = fnv1a_from(FNV_START, &body);
    body.extend_from_slice(&sum.to_le_bytes());
    let index = Index::decode(&body).expect("an older index is read");
    assert_eq!(index.header.server_protocol, 0);
    assert_eq!(index.header.incrementals, 2);
}

#[test]
fn marks_the_named_paths_unsure() {
    let mut new = sorted(vec![
        e("/", 2, DIR),
        e("/a", 3, FILE),
        e("/b", 4, FILE),
        e("/b/c", 5, FILE),
    ]);
    mark_unsure(
        &[b"/a".to_vec(), b"/b/c".to_vec(), b"/gone".to_vec()],
        &mut new,
    );
    let unsure: Vec<&str> = new
        .iter()
        .filter(|e| e.unsure)
        .map(|e| std::str::from_utf8(&e.path).unwrap())
        .collect();
    assert_eq!(unsure, ["/a", "/b/c"]);
}

#[test]
fn finds_what_changed() {
    let old = sorted(vec![
        e("/s", 1, DIR),
        e("/s/same", 2, FILE),
        e("/s/touched", 3, FILE),
        e("/s/gone-dir", 4, DIR),
        e("/s/gone-dir/a", 5, FILE),
        e("/s/gone-dir/b", 6, FILE),
        e("/s/dir-to-file", 7, DIR),
        e("/s/dir-to-file/x", 8, FILE),
        e("/s/file-to-dir", 9, FILE),
        e("/s/replaced", 10, FILE),
        e("/s/unsure", 11, FILE),
    ]);
    let mut new = old.clone();
    new.retain(|x| !x.path.starts_with(b"/s/gone-dir") && !x.path.starts_with(b"/s/dir-to-file"));
    new.retain(|x| x.path != b"/s/file-to-dir");
    new.push(e("/s/dir-to-file", 7, FILE));
    new.push(e("/s/file-to-dir", 9, DIR));
    new.push(e("/s/file-to-dir/inside", 20, FILE));
    new.push(e("/s/new-dir", 21, DIR));
    new.push(e("/s/new-dir/deep", 22, DIR));
    new.push(e("/s/new-dir/deep/f", 23, FILE));
    let mut new = sorted(new);
    let at = |v: &mut Vec<Entry>, p: &str| v.iter().position(|x| x.path == p.as_bytes()).unwrap();
    let k = at(&mut new, "/s/touched");
    new[k].ctime += 1; // same size, same mtime: only ctime moved
    let k = at(&mut new, "/s/replaced");
    new[k].ino = 99;
    let k = at(&mut new, "/s");
    new[k].mtime += 1;
    let mut old = old;
    let k = at(&mut old, "/s/unsure");
    old[k].unsure = true;
    let changes = compare(old.clone(), &new);
    assert_eq!(
        strings(&changes.send),
        [
            "/s",
            "/s/dir-to-file",
            "/s/file-to-dir",
            "/s/file-to-dir/inside",
            "/s/gone-dir",
            "/s/new-dir",
            "/s/new-dir/deep",
            "/s/new-dir/deep/f",
            "/s/replaced",
            "/s/touched",
            "/s/unsure",
        ]
    );
    // /s stays a directory: its unchanged contents stay linked.
    assert_eq!(changes.replace, changes.send[1..].to_vec());
    assert_eq!(changes.vanished, 1);
    // Nothing changed: nothing to send.
    assert_eq!(compare(new.clone(), &new), Changes::default());
}

#[test]
fn all_links_of_a_changed_inode_go_together() {
    let mut a = e("/a", 5, FILE);
    a.nlink = 3;
    let mut b = a.clone();
    b.path = b"/b".to_vec();
    let mut c = a.clone();
    c.path = b"/c".to_vec();
    let old = vec![e("/", 1, DIR), a.clone(), b.clone()];
    // A new link: c is new, a and b are unchanged in the walk's eyes.
    let new = vec![e("/", 1, DIR), a, b, c];
    assert_eq!(
        strings(&compare(old.clone(), &new).send),
        ["/a", "/b", "/c"]
    );
}

#[test]
fn a_full_pass_leaves_what_changed_unsure() {
    let old = vec![e("/", 1, DIR), e("/f", 2, FILE), e("/g", 3, FILE)];
    let mut new = old.clone();
    new[1].ctime += 7;
    mark_changed_unsure(old.clone(), &mut new);
    assert_eq!(
        new.iter().map(|x| x.unsure).collect::<Vec<_>>(),
        [false, true, false]
    );
}

#[test]
fn walks_a_tree_with_its_parents_and_skips_excluded_contents() {
    let dir = std::env::temp_dir().join(format!("bb-index-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/mnt/inside")).unwrap();
    std::fs::create_dir_all(dir.join("src/a")).unwrap();
    std::fs::write(dir.join("src/a/f"), "x").unwrap();
    std::fs::write(dir.join("src/a-x"), "y").unwrap();
    std::fs::write(dir.join("src/mnt/inside/hidden"), "z").unwrap();
    let src = dir.join("src");
    let got = walk(std::slice::from_ref(&src), &[src.join("mnt")], now_ns()).unwrap();
    let rel: Vec<String> = got
        .iter()
        .map(|x| String::from_utf8_lossy(&x.path).into_owned())
        .filter_map(|p| p.strip_prefix(&*dir.to_string_lossy()).map(str::to_owned))
        .collect();
    assert_eq!(
        rel,
        ["", "/src", "/src/a", "/src/a/f", "/src/a-x", "/src/mnt"]
    );
    assert!(
        dir.as_os_str().as_bytes().starts_with(&got[0].path) && got[0].path.len() > 1,
        "the parents come first, without /"
    );
    assert!(
        got.iter()
            .filter(|x| x.path.starts_with(dir.as_os_str().as_bytes()))
            .all(|x| x.unsure),
        "all just made"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_from_paths_are_relative_to_the_root() {
    assert_eq!(files_from_entry(b"/"), b".");
    assert_eq!(files_from_entry(b"/etc/x"), b"etc/x");
}
