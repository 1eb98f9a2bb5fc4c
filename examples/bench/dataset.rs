//! The benchmark's data: a deterministic, seeded tree of files, and a
//! deterministic "mutate" step that changes about 1% of it.
//!
//! Everything (names, sizes, contents, modification times of regular files)
//! follows from the seed and the profile, so two runs back up the same bytes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Modification times of generated files start here (2023-11-14), one second
/// apart, so they are deterministic; mutations use later times.
const BASE_MTIME: u64 = 1_700_000_000;
const MUTATE_MTIME: u64 = BASE_MTIME + 10_000_000;
/// Image regions that are either all data or a hole.
const IMAGE_REGION: u64 = MIB;
const BLOCK: u64 = 4096;

/// xorshift64* with a splitmix64-scrambled seed: tiny, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// What a profile generates.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    /// Files of 0–4 KiB.
    pub tiny: usize,
    /// Files of 4–256 KiB.
    pub medium: usize,
    /// Total bytes of regular files (the image excluded) to reach with files
    /// of 4–32 MiB after the tiny and medium ones.
    pub target_bytes: u64,
    /// The disk image's apparent size.
    pub image_bytes: u64,
    pub dirs: usize,
    pub symlinks: usize,
    pub hardlinks: usize,
    /// Initial size of the log file that each mutate appends to.
    pub log_bytes: u64,
    /// Bytes appended to it per mutate.
    pub log_append: u64,
    /// Files added and deleted per mutate.
    pub churn: usize,
    /// Size of the sparse btrfs image the store lives on.
    pub fs_mib: u64,
}

impl Profile {
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "default" => Some(Profile {
                name: "default",
                tiny: 17_000,
                medium: 2_950,
                target_bytes: 600 * MIB,
                image_bytes: 256 * MIB,
                dirs: 1_200,
                symlinks: 200,
                hardlinks: 100,
                log_bytes: MIB,
                log_append: 64 * KIB,
                churn: 50,
                // Room for byteback's three initial destinations, the
                // floor's three, bare rsync's copy and restic's repository.
                fs_mib: 12288,
            }),
            // A mail or build server's shape (issue 24): 200,000 small
            // files in 10,000 directories, a few big files, a 32 MiB image.
            "many" => Some(Profile {
                name: "many",
                tiny: 198_000,
                medium: 2_000,
                target_bytes: 600 * MIB,
                image_bytes: 32 * MIB,
                dirs: 10_000,
                symlinks: 200,
                hardlinks: 100,
                log_bytes: MIB,
                log_append: 64 * KIB,
                churn: 50,
                fs_mib: 16384,
            }),
            // How the no-change cost grows with the number of files
            // (issue 12): ten times the default's small files.
            "large" => Some(Profile {
                name: "large",
                tiny: 200_000,
                medium: 5_000,
                target_bytes: 800 * MIB,
                image_bytes: 256 * MIB,
                dirs: 12_000,
                symlinks: 500,
                hardlinks: 500,
                log_bytes: MIB,
                log_append: 64 * KIB,
                churn: 50,
                fs_mib: 16384,
            }),
            "small" => Some(Profile {
                name: "small",
                tiny: 1_700,
                medium: 295,
                target_bytes: 60 * MIB,
                image_bytes: 32 * MIB,
                dirs: 120,
                symlinks: 20,
                hardlinks: 10,
                log_bytes: 256 * KIB,
                log_append: 16 * KIB,
                churn: 50,
                fs_mib: 2048,
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Tiny,
    Medium,
    Large,
}

#[derive(Debug, Clone)]
struct Entry {
    rel: PathBuf,
    size: u64,
    class: Class,
    /// Has a second name (a hard link): left alone by mutate.
    linked: bool,
}

/// Totals of the generated tree.
#[derive(Debug, Clone, Default)]
pub struct TreeStats {
    pub regular_files: u64,
    pub tiny: u64,
    pub medium: u64,
    pub large: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Sum of regular files' apparent sizes (hard-linked data once, image included).
    pub apparent_bytes: u64,
    /// Bytes of data actually written (apparent minus the image's holes).
    pub data_bytes: u64,
    pub image_bytes: u64,
    pub image_hole_bytes: u64,
}

/// What one mutate step changed.
#[derive(Debug, Clone, Default)]
pub struct MutateStats {
    pub rewritten_files: u64,
    pub rewritten_bytes: u64,
    pub appended_bytes: u64,
    pub image_blocks: u64,
    pub image_bytes: u64,
    pub added_files: u64,
    pub added_bytes: u64,
    pub deleted_files: u64,
    pub deleted_bytes: u64,
}

impl MutateStats {
    /// New data the backup must store: rewritten files, appended log, image
    /// blocks, added files. Deleted files free nothing (the snapshots keep them).
    pub fn changed_bytes(&self) -> u64 {
        self.rewritten_bytes + self.appended_bytes + self.image_bytes + self.added_bytes
    }
}

/// The tree on disk and what the benchmark knows about it.
pub struct Dataset {
    pub root: PathBuf,
    pub seed: u64,
    pub profile: Profile,
    pub stats: TreeStats,
    dirs: Vec<PathBuf>,
    files: Vec<Entry>,
    log: PathBuf,
    image: PathBuf,
    generation: u64,
}

const TOP: &[&str] = &["etc", "home", "opt", "srv", "usr", "var"];
const WORDS: &[&str] = &[
    "lib", "share", "doc", "src", "cache", "data", "conf", "local", "www", "mail", "projects",
    "photos", "build", "include", "python3", "perl", "locale", "man", "icons", "fonts", "spool",
    "backups", "logs", "tmpl", "assets", "modules",
];
const EXTS: &[&str] = &[
    "txt", "conf", "html", "py", "c", "h", "rs", "json", "xml", "png", "jpg", "gz", "so", "md",
    "css", "js", "db", "pdf",
];

/// Stops a long loop when the user pressed Ctrl-C (checked between files).
pub type Interrupted<'a> = &'a dyn Fn() -> bool;

impl Dataset {
    /// Writes the tree under `root` (which must exist and be empty).
    pub fn generate(root: &Path, profile: &Profile, seed: u64, stop: Interrupted) -> Dataset {
        let mut rng = Rng::new(seed);
        let mut ds = Dataset {
            root: root.to_owned(),
            seed,
            profile: profile.clone(),
            stats: TreeStats::default(),
            dirs: Vec::new(),
            files: Vec::new(),
            log: PathBuf::from("var/log/syslog"),
            image: PathBuf::from("srv/vm/disk.img"),
            generation: 0,
        };
        // Directories: the usual top level, then a random tree at most 7 deep.
        let mut depth = Vec::new();
        for t in TOP {
            ds.dirs.push(PathBuf::from(t));
            depth.push(1usize);
        }
        for extra in ["var/log", "srv/vm"] {
            ds.dirs.push(PathBuf::from(extra));
            depth.push(2);
        }
        while ds.dirs.len() < profile.dirs {
            let parent = rng.below(ds.dirs.len() as u64) as usize;
            if depth[parent] >= 7 {
                continue;
            }
            let word = WORDS[rng.below(WORDS.len() as u64) as usize];
            let name = format!("{word}{}", ds.dirs.len());
            ds.dirs.push(ds.dirs[parent].join(name));
            depth.push(depth[parent] + 1);
        }
        for d in &ds.dirs {
            fs::create_dir_all(root.join(d)).expect("create dataset directory");
        }
        ds.stats.dirs = ds.dirs.len() as u64;

        let mut buf = vec![0u8; MIB as usize];
        let mut index = 0u64;
        let mut add = |ds: &mut Dataset, rng: &mut Rng, class: Class, size: u64| {
            let dir = ds.pick_dir(rng);
            let ext = EXTS[rng.below(EXTS.len() as u64) as usize];
            let rel = ds.dirs[dir].join(format!("f{index:05}.{ext}"));
            write_file(&root.join(&rel), size, rng, &mut buf, BASE_MTIME + index);
            index += 1;
            ds.files.push(Entry {
                rel,
                size,
                class,
                linked: false,
            });
            ds.stats.regular_files += 1;
            ds.stats.apparent_bytes += size;
            ds.stats.data_bytes += size;
            match class {
                Class::Tiny => ds.stats.tiny += 1,
                Class::Medium => ds.stats.medium += 1,
                Class::Large => ds.stats.large += 1,
            }
        };
        for i in 0..profile.tiny {
            if i % 1000 == 0 && stop() {
                panic!("interrupted");
            }
            let size = tiny_size(&mut rng);
            add(&mut ds, &mut rng, Class::Tiny, size);
        }
        for i in 0..profile.medium {
            if i % 100 == 0 && stop() {
                panic!("interrupted");
            }
            let size = medium_size(&mut rng);
            add(&mut ds, &mut rng, Class::Medium, size);
        }
        // The log file counts as a medium file that is never rewritten.
        let log_text = log_lines(&mut rng, profile.log_bytes);
        fs::write(root.join(&ds.log), &log_text).expect("write log");
        set_mtime(&root.join(&ds.log), BASE_MTIME - 1);
        ds.stats.regular_files += 1;
        ds.stats.medium += 1;
        ds.stats.apparent_bytes += profile.log_bytes;
        ds.stats.data_bytes += profile.log_bytes;
        // Large files until the target is reached.
        while ds.stats.apparent_bytes + 4 * MIB <= profile.target_bytes {
            if stop() {
                panic!("interrupted");
            }
            let room = profile.target_bytes - ds.stats.apparent_bytes;
            let size = large_size(&mut rng).min(room);
            add(&mut ds, &mut rng, Class::Large, size);
        }
        // Hard links: a second name for some small files.
        for i in 0..profile.hardlinks {
            let small: Vec<usize> = (0..ds.files.len())
                .filter(|&f| ds.files[f].class != Class::Large && !ds.files[f].linked)
                .collect();
            let f = small[rng.below(small.len() as u64) as usize];
            let dir = ds.pick_dir(&mut rng);
            let link = ds.dirs[dir].join(format!("hardlink{i:04}"));
            fs::hard_link(root.join(&ds.files[f].rel), root.join(&link)).expect("hard link");
            ds.files[f].linked = true;
            ds.stats.hardlinks += 1;
        }
        // Symbolic links: half to files in the tree (relative), half dangling
        // absolute ones like /etc/alternatives has.
        for i in 0..profile.symlinks {
            let dir = ds.pick_dir(&mut rng);
            let f = rng.below(ds.files.len() as u64) as usize;
            let target = if i % 2 == 0 {
                let up = "../".repeat(ds.dirs[dir].components().count());
                format!("{up}{}", ds.files[f].rel.display())
            } else {
                format!("/usr/lib/alternatives/tool{i}")
            };
            let link = root.join(&ds.dirs[dir]).join(format!("symlink{i:04}"));
            std::os::unix::fs::symlink(target, link).expect("symlink");
            ds.stats.symlinks += 1;
        }
        // The disk image: 1 MiB regions of data, one in eight left as a hole.
        let image = root.join(&ds.image);
        let file = File::create(&image).expect("create image");
        file.set_len(profile.image_bytes).expect("size image");
        let regions = profile.image_bytes / IMAGE_REGION;
        for r in 0..regions {
            if r % 64 == 0 && stop() {
                panic!("interrupted");
            }
            if rng.below(8) == 0 {
                ds.stats.image_hole_bytes += IMAGE_REGION;
                continue;
            }
            rng.fill(&mut buf);
            file.write_all_at(&buf, r * IMAGE_REGION)
                .expect("write image");
        }
        drop(file);
        set_mtime(&image, BASE_MTIME - 2);
        ds.stats.regular_files += 1;
        ds.stats.image_bytes = profile.image_bytes;
        ds.stats.apparent_bytes += profile.image_bytes;
        ds.stats.data_bytes += profile.image_bytes - ds.stats.image_hole_bytes;
        ds
    }

    /// The largest regular file (the disk image in both profiles): its
    /// absolute path and apparent size.
    pub fn largest_file(&self) -> (PathBuf, u64) {
        let mut best = (self.image.clone(), self.profile.image_bytes);
        for e in &self.files {
            if e.size > best.1 {
                best = (e.rel.clone(), e.size);
            }
        }
        (self.root.join(best.0), best.1)
    }

    /// How many of the current regular files (first names only, the log and
    /// the image included) satisfy `keep(relative path)`.
    pub fn count_files(&self, keep: impl Fn(&Path) -> bool) -> usize {
        let named = self.files.iter().map(|e| e.rel.as_path());
        named
            .chain([self.log.as_path(), self.image.as_path()])
            .filter(|p| keep(p))
            .count()
    }

    /// Directories are picked with a skew towards the first ones, so some
    /// hold many files and most a few.
    fn pick_dir(&self, rng: &mut Rng) -> usize {
        let n = self.dirs.len() as u64;
        rng.below(n).min(rng.below(n)) as usize
    }

    /// One deterministic mutate step: ~1% of small files rewritten, the log
    /// appended to, 1% of the image's 4 KiB blocks rewritten in place at
    /// random offsets, `churn` files added and `churn` deleted.
    pub fn mutate(&mut self) -> MutateStats {
        self.generation += 1;
        let g = self.generation;
        let mut rng = Rng::new(self.seed ^ g.wrapping_mul(0xA24B_AED4_963E_E407));
        let mut st = MutateStats::default();
        let mtime = MUTATE_MTIME + g * 1000;
        let mut buf = vec![0u8; MIB as usize];
        let eligible = |files: &[Entry]| -> Vec<usize> {
            (0..files.len())
                .filter(|&i| files[i].class != Class::Large && !files[i].linked)
                .collect()
        };
        // Rewrite ~1% of the small files with new contents (and sizes).
        let mut pool = eligible(&self.files);
        let n = (pool.len() / 100).max(1);
        for _ in 0..n {
            let f = pool.swap_remove(rng.below(pool.len() as u64) as usize);
            let e = &mut self.files[f];
            e.size = match e.class {
                Class::Tiny => tiny_size(&mut rng),
                _ => medium_size(&mut rng),
            };
            write_file(&self.root.join(&e.rel), e.size, &mut rng, &mut buf, mtime);
            st.rewritten_files += 1;
            st.rewritten_bytes += e.size;
        }
        // Append to the log.
        let text = log_lines(&mut rng, self.profile.log_append);
        let log = self.root.join(&self.log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open log");
        f.write_all(&text).expect("append log");
        drop(f);
        set_mtime(&log, mtime);
        st.appended_bytes = text.len() as u64;
        // Rewrite 1% of the image's blocks in place.
        let image = self.root.join(&self.image);
        let f = OpenOptions::new()
            .write(true)
            .open(&image)
            .expect("open image");
        let blocks = self.profile.image_bytes / BLOCK;
        let mut chosen = std::collections::BTreeSet::new();
        while (chosen.len() as u64) < blocks / 100 {
            chosen.insert(rng.below(blocks));
        }
        for b in &chosen {
            rng.fill(&mut buf[..BLOCK as usize]);
            f.write_all_at(&buf[..BLOCK as usize], b * BLOCK)
                .expect("write image block");
        }
        drop(f);
        set_mtime(&image, mtime);
        st.image_blocks = chosen.len() as u64;
        st.image_bytes = st.image_blocks * BLOCK;
        // Delete some small files.
        for _ in 0..self.profile.churn {
            let pool = eligible(&self.files);
            let f = pool[rng.below(pool.len() as u64) as usize];
            let e = self.files.swap_remove(f);
            fs::remove_file(self.root.join(&e.rel)).expect("delete file");
            st.deleted_files += 1;
            st.deleted_bytes += e.size;
        }
        // And add as many new ones.
        for i in 0..self.profile.churn {
            let dir = self.pick_dir(&mut rng);
            let (class, size) = if rng.below(10) < 8 {
                (Class::Tiny, tiny_size(&mut rng))
            } else {
                (Class::Medium, medium_size(&mut rng))
            };
            let rel = self.dirs[dir].join(format!("new-g{g}-{i:02}.dat"));
            write_file(&self.root.join(&rel), size, &mut rng, &mut buf, mtime);
            self.files.push(Entry {
                rel,
                size,
                class,
                linked: false,
            });
            st.added_files += 1;
            st.added_bytes += size;
        }
        st
    }
}

fn tiny_size(rng: &mut Rng) -> u64 {
    rng.below(4 * KIB + 1)
}

/// Log-uniform-ish over 4–256 KiB: one of six octaves, uniform inside it.
fn medium_size(rng: &mut Rng) -> u64 {
    let low = (4 * KIB) << rng.below(6);
    low + 1 + rng.below(low)
}

/// 4–8, 8–16 or 16–32 MiB.
fn large_size(rng: &mut Rng) -> u64 {
    let low = (4 * MIB) << rng.below(3);
    low + rng.below(low)
}

fn write_file(path: &Path, size: u64, rng: &mut Rng, buf: &mut [u8], mtime: u64) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write file");
        left -= n as u64;
    }
    drop(f);
    set_mtime(path, mtime);
}

fn set_mtime(path: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    let f = File::options()
        .write(true)
        .open(path)
        .expect("open for mtime");
    f.set_modified(t).expect("set mtime");
}

/// Syslog-like text of exactly `bytes` bytes.
fn log_lines(rng: &mut Rng, bytes: u64) -> Vec<u8> {
    const PROCS: &[&str] = &[
        "sshd",
        "cron",
        "kernel",
        "systemd",
        "postfix/smtpd",
        "nginx",
    ];
    let mut out = Vec::with_capacity(bytes as usize + 200);
    while (out.len() as u64) < bytes {
        let secs = rng.below(86_400);
        let p = PROCS[rng.below(PROCS.len() as u64) as usize];
        let line = format!(
            "2026-01-01T{:02}:{:02}:{:02} host {p}[{}]: event {:016x} handled in {} ms\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            rng.below(65_536),
            rng.next_u64(),
            rng.below(1000)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(bytes as usize);
    out
}
