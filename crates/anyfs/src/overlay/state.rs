//! What an overlay remembers beside the upper tree's own files: paths the
//! base shows that are deleted (whiteouts), upper directories that hide the
//! base's (opaque), files whose unwritten bytes still come from a base
//! file (origins, with the ranges written), the inode number each copied
//! node had in the base, and what the base held at each path when the
//! overlay first changed it (stamps, for `apply`'s conflicts).
//!
//! It is kept as a journal of lines in the upper tree, appended after each
//! change of the upper tree it describes, and read back whole at open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::types::{FileType, Metadata};

/// What the base held at a path when the overlay first changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The kind of node.
    pub file_type: FileType,
    /// Its size.
    pub len: u64,
    /// Its modification time.
    pub modified: SystemTime,
}

impl From<&Metadata> for Stamp {
    fn from(m: &Metadata) -> Self {
        Stamp {
            file_type: m.file_type,
            len: m.len,
            modified: m.modified,
        }
    }
}

/// Byte ranges `[start, end)`, sorted and apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Adds `[start, end)`, merging what it touches.
    pub(super) fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(s, e) in &self.0 {
            if e < start || s > end {
                kept.push((s, e));
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        kept.push((start, end));
        kept.sort_unstable();
        self.0 = kept;
    }

    /// Drops everything at or past `size`.
    pub(super) fn cut(&mut self, size: u64) {
        self.0.retain(|&(s, _)| s < size);
        if let Some(last) = self.0.last_mut() {
            last.1 = last.1.min(size);
        }
    }

    /// The parts of `[start, end)` no range covers.
    pub(super) fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        for &(s, e) in &self.0 {
            if e <= at {
                continue;
            }
            if s >= end {
                break;
            }
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
            if at >= end {
                break;
            }
        }
        if at < end {
            out.push((at, end));
        }
        out
    }
}

/// A file of the upper tree whose unwritten bytes come from a base file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Origin {
    /// The base file.
    pub(super) path: PathBuf,
    /// What was written over it (or cut and grown again: zeros).
    pub(super) written: Ranges,
}

/// The overlay's memory of itself.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) whiteouts: BTreeSet<PathBuf>,
    pub(super) opaque: BTreeSet<PathBuf>,
    /// By upper inode number.
    pub(super) origins: HashMap<u64, Origin>,
    /// Upper inode number → the (tagged) inode number the node had in the
    /// base, which it keeps.
    pub(super) identity: HashMap<u64, u64>,
    /// By path: the base at first change (`None`: nothing there).
    pub(super) stamps: BTreeMap<PathBuf, Option<Stamp>>,
}

fn hex(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn unhex(text: &str) -> Option<PathBuf> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect();
    Some(PathBuf::from(OsString::from_vec(bytes?)))
}

fn kind_letter(kind: FileType) -> &'static str {
    match kind {
        FileType::File => "f",
        FileType::Directory => "d",
        FileType::Symlink => "l",
    }
}

/// One change of the state, as a journal line says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Event {
    Whiteout(PathBuf),
    Unwhiteout(PathBuf),
    Opaque(PathBuf),
    Unopaque(PathBuf),
    /// Upper inode, base file.
    Origin(u64, PathBuf),
    /// Upper inode, range written.
    Wrote(u64, u64, u64),
    /// Upper inode, new size (ranges past it dropped).
    Cut(u64, u64),
    /// Upper inode: all its bytes are its own now.
    Full(u64),
    /// Upper inode, the tagged base inode it keeps.
    Identity(u64, u64),
    /// The base at a path, recorded once (`Stamp` replaces it).
    FirstStamp(PathBuf, Option<Stamp>),
    Stamp(PathBuf, Option<Stamp>),
    /// Whiteouts and opaque marks under the first path move to the second.
    Move(PathBuf, PathBuf),
    /// Whiteouts and opaque marks strictly below the path go.
    Forget(PathBuf),
}

impl Event {
    pub(super) fn line(&self) -> String {
        let stamp = |s: &Option<Stamp>| match s {
            None => "-".to_string(),
            Some(s) => {
                let t = s.modified.duration_since(UNIX_EPOCH).unwrap_or_default();
                format!(
                    "{} {} {} {}",
                    kind_letter(s.file_type),
                    s.len,
                    t.as_secs(),
                    t.subsec_nanos()
                )
            }
        };
        match self {
            Event::Whiteout(p) => format!("w {}", hex(p)),
            Event::Unwhiteout(p) => format!("W {}", hex(p)),
            Event::Opaque(p) => format!("o {}", hex(p)),
            Event::Unopaque(p) => format!("O {}", hex(p)),
            Event::Origin(ino, p) => format!("p {ino} {}", hex(p)),
            Event::Wrote(ino, s, e) => format!("r {ino} {s} {e}"),
            Event::Cut(ino, size) => format!("t {ino} {size}"),
            Event::Full(ino) => format!("P {ino}"),
            Event::Identity(ino, tagged) => format!("i {ino} {tagged}"),
            Event::FirstStamp(p, s) => format!("s {} {}", hex(p), stamp(s)),
            Event::Stamp(p, s) => format!("S {} {}", hex(p), stamp(s)),
            Event::Move(a, b) => format!("m {} {}", hex(a), hex(b)),
            Event::Forget(p) => format!("F {}", hex(p)),
        }
    }

    pub(super) fn parse(line: &str) -> Option<Event> {
        let mut f = line.split(' ');
        let tag = f.next()?;
        let mut path = || f.next().and_then(unhex);
        let event = match tag {
            "w" => Event::Whiteout(path()?),
            "W" => Event::Unwhiteout(path()?),
            "o" => Event::Opaque(path()?),
            "O" => Event::Unopaque(path()?),
            "F" => Event::Forget(path()?),
            "m" => {
                let a = path()?;
                Event::Move(a, path()?)
            }
            "s" | "S" => {
                let p = path()?;
                let rest: Vec<&str> = f.collect();
                let stamp = match rest.as_slice() {
                    ["-"] => None,
                    [k, len, secs, nanos] => Some(Stamp {
                        file_type: match *k {
                            "f" => FileType::File,
                            "d" => FileType::Directory,
                            "l" => FileType::Symlink,
                            _ => return None,
                        },
                        len: len.parse().ok()?,
                        modified: UNIX_EPOCH
                            + Duration::new(secs.parse().ok()?, nanos.parse().ok()?),
                    }),
                    _ => return None,
                };
                if tag == "s" {
                    Event::FirstStamp(p, stamp)
                } else {
                    Event::Stamp(p, stamp)
                }
            }
            _ => {
                let nums: Option<Vec<u64>> = f.clone().map(|n| n.parse().ok()).collect();
                match (tag, nums.as_deref()) {
                    ("r", Some([ino, s, e])) => Event::Wrote(*ino, *s, *e),
                    ("t", Some([ino, size])) => Event::Cut(*ino, *size),
                    ("P", Some([ino])) => Event::Full(*ino),
                    ("i", Some([ino, tagged])) => Event::Identity(*ino, *tagged),
                    ("p", _) => {
                        let mut f = line.split(' ').skip(1);
                        let ino = f.next()?.parse().ok()?;
                        Event::Origin(ino, unhex(f.next()?)?)
                    }
                    _ => return None,
                }
            }
        };
        Some(event)
    }
}

/// Whether `path` is `dir` or below it.
pub(super) fn within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

impl State {
    pub(super) fn apply(&mut self, event: &Event) {
        match event {
            Event::Whiteout(p) => {
                self.whiteouts.insert(p.clone());
            }
            Event::Unwhiteout(p) => {
                self.whiteouts.remove(p);
            }
            Event::Opaque(p) => {
                self.opaque.insert(p.clone());
            }
            Event::Unopaque(p) => {
                self.opaque.remove(p);
            }
            Event::Origin(ino, p) => {
                self.origins.insert(
                    *ino,
                    Origin {
                        path: p.clone(),
                        written: Ranges::default(),
                    },
                );
            }
            Event::Wrote(ino, s, e) => {
                if let Some(o) = self.origins.get_mut(ino) {
                    o.written.add(*s, *e);
                }
            }
            Event::Cut(ino, size) => {
                if let Some(o) = self.origins.get_mut(ino) {
                    o.written.cut(*size);
                }
            }
            Event::Full(ino) => {
                self.origins.remove(ino);
            }
            Event::Identity(ino, tagged) => {
                self.identity.insert(*ino, *tagged);
            }
            Event::FirstStamp(p, s) => {
                self.stamps.entry(p.clone()).or_insert_with(|| s.clone());
            }
            Event::Stamp(p, s) => {
                self.stamps.insert(p.clone(), s.clone());
            }
            Event::Move(from, to) => {
                for set in [&mut self.whiteouts, &mut self.opaque] {
                    let moved: Vec<PathBuf> =
                        set.iter().filter(|p| within(p, from)).cloned().collect();
                    for p in moved {
                        set.remove(&p);
                        let rest = p.strip_prefix(from).unwrap_or(Path::new(""));
                        set.insert(if rest.as_os_str().is_empty() {
                            to.clone()
                        } else {
                            to.join(rest)
                        });
                    }
                }
            }
            Event::Forget(dir) => {
                for set in [&mut self.whiteouts, &mut self.opaque] {
                    set.retain(|p| p == dir || !within(p, dir));
                }
            }
        }
    }

    /// The journal lines that say this state (to start a journal afresh).
    pub(super) fn lines(&self) -> Vec<String> {
        let mut events = Vec::new();
        events.extend(self.whiteouts.iter().cloned().map(Event::Whiteout));
        events.extend(self.opaque.iter().cloned().map(Event::Opaque));
        for (ino, o) in &self.origins {
            events.push(Event::Origin(*ino, o.path.clone()));
            events.extend(o.written.0.iter().map(|&(s, e)| Event::Wrote(*ino, s, e)));
        }
        events.extend(self.identity.iter().map(|(i, t)| Event::Identity(*i, *t)));
        events.extend(
            self.stamps
                .iter()
                .map(|(p, s)| Event::Stamp(p.clone(), s.clone())),
        );
        events.iter().map(Event::line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_cut_and_show_their_gaps() {
        let mut r = Ranges::default();
        r.add(10, 20);
        r.add(30, 40);
        r.add(18, 31);
        assert_eq!(r.0, [(10, 40)]);
        r.add(50, 60);
        assert_eq!(r.gaps(0, 70), [(0, 10), (40, 50), (60, 70)]);
        assert_eq!(r.gaps(12, 35), []);
        r.cut(55);
        assert_eq!(r.0, [(10, 40), (50, 55)]);
        r.cut(5);
        assert!(r.0.is_empty());
    }

    #[test]
    fn every_event_reads_back_as_written() {
        let stamp = Some(Stamp {
            file_type: FileType::File,
            len: 12,
            modified: UNIX_EPOCH + Duration::new(1_700_000_000, 123),
        });
        let odd = PathBuf::from(OsString::from_vec(b"/a b\n\xff/c".to_vec()));
        for event in [
            Event::Whiteout(odd.clone()),
            Event::Unwhiteout(odd.clone()),
            Event::Opaque(odd.clone()),
            Event::Unopaque(odd.clone()),
            Event::Origin(7, odd.clone()),
            Event::Wrote(7, 1, 2),
            Event::Cut(7, 9),
            Event::Full(7),
            Event::Identity(7, 1 << 62 | 5),
            Event::FirstStamp(odd.clone(), stamp.clone()),
            Event::Stamp(odd.clone(), None),
            Event::Move(odd.clone(), PathBuf::from("/x")),
            Event::Forget(odd.clone()),
        ] {
            assert_eq!(
                Event::parse(&event.line()),
                Some(event.clone()),
                "{event:?}"
            );
        }
        assert_eq!(Event::parse("r 1 2"), None);
        assert_eq!(Event::parse("zz"), None);
    }
}
