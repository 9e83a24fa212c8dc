//! Model-based property test: random operation sequences run against the
//! subject and against a small reference model; after every step the results
//! and the whole trees must agree.
//!
//! The model is deliberately naive — a sorted map from resolved path to
//! node, with its own symlink resolution — so that it is easy to trust.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyfs::{FileType, Fs, FsErrorKind, FsLink, FsResult, Metadata};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// How many sequences to run: `ANYFS_MODEL_CASES` or
/// [`DEFAULT_MODEL_CASES`](crate::DEFAULT_MODEL_CASES).
pub fn cases() -> u32 {
    std::env::var("ANYFS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::DEFAULT_MODEL_CASES)
}

/// One operation of a sequence. Paths are caller paths (`..` and `.` included).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Op {
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    WriteRange(String, u64, Vec<u8>),
    Read(String),
    Truncate(String, u64),
    RemoveFile(String),
    CreateDir(String),
    CreateDirAll(String),
    RemoveDir(String),
    RemoveDirAll(String),
    Rename(String, String),
    Copy(String, String),
    ReadDir(String),
    Metadata(String),
    Exists(String),
    Symlink(String, String),
    HardLink(String, String),
    ReadLink(String),
    SymlinkMetadata(String),
}

/// What an operation returned, in a form both sides can produce.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Bytes(Vec<u8>),
    Bool(bool),
    Names(Vec<String>),
    /// Type, length (files and links only) and link count (files only).
    Meta(FileType, Option<u64>, Option<u64>),
    Target(String),
    Err(FsErrorKind),
}

/// A node as seen by walking a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// A whole tree: every node by path, and which files are hard links of each
/// other.
#[derive(Debug, PartialEq, Eq)]
struct Tree {
    nodes: BTreeMap<String, Seen>,
    linked: BTreeSet<Vec<String>>,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(name(), 1..4).prop_map(|v| format!("/{}", v.join("/")))
}

fn target() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(name(), 1..3)).prop_map(|(abs, v)| {
        if abs {
            format!("/{}", v.join("/"))
        } else {
            v.join("/")
        }
    })
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..8)
}

fn op(with_links: bool) -> BoxedStrategy<Op> {
    let plain = prop_oneof![
        6 => (path(), data()).prop_map(|(p, d)| Op::Write(p, d)),
        2 => (path(), data()).prop_map(|(p, d)| Op::Append(p, d)),
        2 => (path(), 0u64..12, data()).prop_map(|(p, at, d)| Op::WriteRange(p, at, d)),
        2 => path().prop_map(Op::Read),
        1 => (path(), 0u64..12).prop_map(|(p, n)| Op::Truncate(p, n)),
        2 => path().prop_map(Op::RemoveFile),
        5 => path().prop_map(Op::CreateDir),
        2 => path().prop_map(Op::CreateDirAll),
        2 => path().prop_map(Op::RemoveDir),
        1 => path().prop_map(Op::RemoveDirAll),
        3 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Copy(a, b)),
        1 => path().prop_map(Op::ReadDir),
        1 => path().prop_map(Op::Metadata),
        1 => path().prop_map(Op::Exists),
    ];
    if !with_links {
        return plain.boxed();
    }
    prop_oneof![
        14 => plain,
        3 => (target(), path()).prop_map(|(t, l)| Op::Symlink(t, l)),
        2 => (path(), path()).prop_map(|(a, b)| Op::HardLink(a, b)),
        1 => path().prop_map(Op::ReadLink),
        1 => path().prop_map(Op::SymlinkMetadata),
    ]
    .boxed()
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(u64),
    /// A link has an identity too: hard links may name it.
    Symlink(u64, String),
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<String, Node>,
    contents: HashMap<u64, Vec<u8>>,
    next_id: u64,
}

type ModelResult<T> = Result<T, FsErrorKind>;

fn comps(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect()
}

fn join(names: &[String]) -> String {
    format!("/{}", names.join("/"))
}

fn parent(path: &str) -> String {
    let names = comps(path);
    join(&names[..names.len().saturating_sub(1)])
}

impl Model {
    fn new() -> Self {
        Self {
            nodes: BTreeMap::from([("/".to_string(), Node::Dir)]),
            contents: HashMap::new(),
            next_id: 1,
        }
    }

    /// POSIX resolution, written independently of the library's.
    fn resolve(&self, path: &str, follow_last: bool) -> ModelResult<String> {
        let mut todo: Vec<String> = comps(path).into_iter().rev().collect();
        let mut out: Vec<String> = Vec::new();
        let (mut missing, mut not_dir) = (false, false);
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                if missing {
                    return Err(FsErrorKind::NotFound);
                }
                if not_dir {
                    return Err(FsErrorKind::NotADirectory);
                }
                out.pop();
                continue;
            }
            if not_dir {
                return Err(FsErrorKind::NotADirectory);
            }
            if missing {
                out.push(c);
                continue;
            }
            out.push(c);
            match self.nodes.get(&join(&out)) {
                None => missing = true,
                Some(Node::Dir) => {}
                Some(Node::File(_)) => not_dir = true,
                Some(Node::Symlink(..)) if todo.is_empty() && !follow_last => not_dir = true,
                Some(Node::Symlink(_, t)) => {
                    hops += 1;
                    if hops > 40 {
                        return Err(FsErrorKind::TooManySymlinks);
                    }
                    out.pop();
                    if t.starts_with('/') {
                        out.clear();
                    }
                    todo.extend(comps(t).into_iter().rev());
                }
            }
        }
        Ok(join(&out))
    }

    /// What the backend's own (non-following) walk reports for a path.
    fn lookup(&self, path: &str) -> ModelResult<&Node> {
        let names = comps(path);
        let mut cur = Vec::new();
        for name in names {
            match self.nodes.get(&join(&cur)) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => return Err(FsErrorKind::NotADirectory),
                Some(Node::Symlink(..)) => return Err(FsErrorKind::InvalidPath),
                None => unreachable!("walked into a missing node"),
            }
            cur.push(name);
            if !self.nodes.contains_key(&join(&cur)) {
                return Err(FsErrorKind::NotFound);
            }
        }
        Ok(&self.nodes[&join(&cur)])
    }

    /// The checks on the directory a new or removed name lives in.
    fn check_parent(&self, path: &str) -> ModelResult<()> {
        if comps(path).is_empty() {
            return Err(FsErrorKind::InvalidPath);
        }
        match self.lookup(&parent(path))? {
            Node::Dir => Ok(()),
            Node::File(_) => Err(FsErrorKind::NotADirectory),
            Node::Symlink(..) => Err(FsErrorKind::InvalidPath),
        }
    }

    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect()
    }

    fn subtree(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn new_file(&mut self, path: &str, data: Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        self.contents.insert(id, data);
        self.nodes.insert(path.to_string(), Node::File(id));
    }

    fn nlink(&self, id: u64) -> u64 {
        self.nodes
            .values()
            .filter(|n| matches!(n, Node::File(i) if *i == id))
            .count() as u64
    }

    fn meta(&self, node: &Node) -> Outcome {
        match node {
            Node::Dir => Outcome::Meta(FileType::Directory, None, None),
            Node::File(id) => Outcome::Meta(
                FileType::File,
                Some(self.contents[id].len() as u64),
                Some(self.nlink(*id)),
            ),
            Node::Symlink(_, t) => Outcome::Meta(FileType::Symlink, Some(t.len() as u64), None),
        }
    }

    /// The file a write lands in: existing, or created empty.
    fn file_for_write(&mut self, path: &str) -> ModelResult<u64> {
        self.check_parent(path)?;
        match self.nodes.get(path) {
            Some(Node::File(id)) => Ok(*id),
            Some(Node::Dir) => Err(FsErrorKind::IsADirectory),
            Some(Node::Symlink(..)) => Err(FsErrorKind::InvalidPath),
            None => {
                self.new_file(path, Vec::new());
                match self.nodes[path] {
                    Node::File(id) => Ok(id),
                    _ => unreachable!(),
                }
            }
        }
    }

    fn file_id(&self, path: &str) -> ModelResult<u64> {
        match self.lookup(path)? {
            Node::File(id) => Ok(*id),
            Node::Dir => Err(FsErrorKind::IsADirectory),
            Node::Symlink(..) => Err(FsErrorKind::InvalidPath),
        }
    }

    fn apply(&mut self, op: &Op) -> ModelResult<Outcome> {
        match op {
            Op::Write(p, d) => {
                let r = self.resolve(p, true)?;
                let id = self.file_for_write(&r)?;
                self.contents.insert(id, d.clone());
                Ok(Outcome::Done)
            }
            Op::Append(p, d) => {
                let r = self.resolve(p, true)?;
                let id = self.file_for_write(&r)?;
                self.contents
                    .get_mut(&id)
                    .expect("content")
                    .extend_from_slice(d);
                Ok(Outcome::Done)
            }
            Op::WriteRange(p, at, d) => {
                let r = self.resolve(p, true)?;
                let id = self.file_id(&r)?;
                let content = self.contents.get_mut(&id).expect("content");
                let (at, end) = (*at as usize, *at as usize + d.len());
                if !d.is_empty() {
                    if content.len() < end {
                        content.resize(end, 0);
                    }
                    content[at..end].copy_from_slice(d);
                }
                Ok(Outcome::Done)
            }
            Op::Read(p) => {
                let r = self.resolve(p, true)?;
                let id = self.file_id(&r)?;
                Ok(Outcome::Bytes(self.contents[&id].clone()))
            }
            Op::Truncate(p, n) => {
                let r = self.resolve(p, true)?;
                let id = self.file_id(&r)?;
                self.contents
                    .get_mut(&id)
                    .expect("content")
                    .resize(*n as usize, 0);
                Ok(Outcome::Done)
            }
            Op::RemoveFile(p) => {
                let r = self.resolve(p, false)?;
                self.check_parent(&r)?;
                match self.nodes.get(&r) {
                    None => Err(FsErrorKind::NotFound),
                    Some(Node::Dir) => Err(FsErrorKind::IsADirectory),
                    Some(_) => {
                        self.nodes.remove(&r);
                        Ok(Outcome::Done)
                    }
                }
            }
            Op::CreateDir(p) => {
                let r = self.resolve(p, false)?;
                self.check_parent(&r)?;
                if self.nodes.contains_key(&r) {
                    return Err(FsErrorKind::AlreadyExists);
                }
                self.nodes.insert(r, Node::Dir);
                Ok(Outcome::Done)
            }
            Op::CreateDirAll(p) => {
                let r = self.resolve(p, true)?;
                let names = comps(&r);
                for i in 1..=names.len() {
                    let here = join(&names[..i]);
                    match self.nodes.get(&here) {
                        Some(Node::Dir) => {}
                        Some(Node::Symlink(..)) => return Err(FsErrorKind::InvalidPath),
                        Some(Node::File(_)) if i == names.len() => {
                            return Err(FsErrorKind::AlreadyExists);
                        }
                        Some(Node::File(_)) => return Err(FsErrorKind::NotADirectory),
                        None => {
                            self.nodes.insert(here, Node::Dir);
                        }
                    }
                }
                Ok(Outcome::Done)
            }
            Op::RemoveDir(p) => {
                let r = self.resolve(p, false)?;
                self.check_parent(&r)?;
                match self.nodes.get(&r) {
                    None => Err(FsErrorKind::NotFound),
                    Some(Node::Dir) if !self.children(&r).is_empty() => {
                        Err(FsErrorKind::DirectoryNotEmpty)
                    }
                    Some(Node::Dir) => {
                        self.nodes.remove(&r);
                        Ok(Outcome::Done)
                    }
                    Some(_) => Err(FsErrorKind::NotADirectory),
                }
            }
            Op::RemoveDirAll(p) => {
                let r = self.resolve(p, false)?;
                self.check_parent(&r)?;
                match self.nodes.get(&r) {
                    None => Err(FsErrorKind::NotFound),
                    Some(Node::File(_)) => Err(FsErrorKind::NotADirectory),
                    Some(Node::Symlink(..)) => {
                        self.nodes.remove(&r);
                        Ok(Outcome::Done)
                    }
                    Some(Node::Dir) => {
                        for k in self.subtree(&r) {
                            self.nodes.remove(&k);
                        }
                        self.nodes.remove(&r);
                        Ok(Outcome::Done)
                    }
                }
            }
            Op::Rename(a, b) => {
                let rb = self.resolve(b, false)?;
                let ra = self.resolve(a, false)?;
                self.check_parent(&ra)?;
                let src = self.nodes.get(&ra).cloned().ok_or(FsErrorKind::NotFound)?;
                self.check_parent(&rb)?;
                let src_dir = matches!(src, Node::Dir);
                let dst_parent = parent(&rb);
                if src_dir && (dst_parent == ra || dst_parent.starts_with(&format!("{ra}/"))) {
                    return Err(FsErrorKind::InvalidPath);
                }
                if let Some(dst) = self.nodes.get(&rb) {
                    let same = ra == rb
                        || matches!((&src, dst), (Node::File(x), Node::File(y)) if x == y)
                        || matches!((&src, dst), (Node::Symlink(x, _), Node::Symlink(y, _)) if x == y);
                    if same {
                        return Ok(Outcome::Done);
                    }
                    match (dst, src_dir) {
                        (Node::Dir, true) if !self.children(&rb).is_empty() => {
                            return Err(FsErrorKind::DirectoryNotEmpty);
                        }
                        (Node::Dir, true) => {}
                        (Node::Dir, false) => return Err(FsErrorKind::IsADirectory),
                        (_, true) => return Err(FsErrorKind::NotADirectory),
                        (_, false) => {}
                    }
                    self.nodes.remove(&rb);
                }
                let moved: Vec<String> = self.subtree(&ra);
                self.nodes.remove(&ra);
                self.nodes.insert(rb.clone(), src);
                for old in moved {
                    let node = self.nodes.remove(&old).expect("listed");
                    let new = format!("{rb}{}", &old[ra.len()..]);
                    self.nodes.insert(new, node);
                }
                Ok(Outcome::Done)
            }
            Op::Copy(a, b) => {
                let rb = self.resolve(b, true)?;
                let ra = self.resolve(a, true)?;
                let src = self.file_id(&ra)?;
                let dst = self.file_for_write(&rb)?;
                if src != dst {
                    let data = self.contents[&src].clone();
                    self.contents.insert(dst, data);
                }
                Ok(Outcome::Done)
            }
            Op::ReadDir(p) => {
                let r = self.resolve(p, true)?;
                match self.lookup(&r)? {
                    Node::Dir => Ok(Outcome::Names(self.children(&r))),
                    _ => Err(FsErrorKind::NotADirectory),
                }
            }
            Op::Metadata(p) => {
                let r = self.resolve(p, true)?;
                let node = self.lookup(&r)?;
                Ok(self.meta(node))
            }
            Op::SymlinkMetadata(p) => {
                let r = self.resolve(p, false)?;
                let node = self.lookup(&r)?;
                Ok(self.meta(node))
            }
            Op::Exists(p) => match self
                .resolve(p, true)
                .and_then(|r| self.lookup(&r).map(drop))
            {
                Ok(()) => Ok(Outcome::Bool(true)),
                Err(FsErrorKind::NotFound | FsErrorKind::NotADirectory) => Ok(Outcome::Bool(false)),
                Err(e) => Err(e),
            },
            Op::Symlink(t, l) => {
                let r = self.resolve(l, false)?;
                self.check_parent(&r)?;
                if self.nodes.contains_key(&r) {
                    return Err(FsErrorKind::AlreadyExists);
                }
                let id = self.next_id;
                self.next_id += 1;
                self.nodes.insert(r, Node::Symlink(id, t.clone()));
                Ok(Outcome::Done)
            }
            Op::HardLink(a, b) => {
                let rb = self.resolve(b, false)?;
                let ra = self.resolve(a, false)?;
                self.check_parent(&ra)?;
                let src = self.nodes.get(&ra).cloned().ok_or(FsErrorKind::NotFound)?;
                if matches!(src, Node::Dir) {
                    return Err(FsErrorKind::PermissionDenied);
                }
                self.check_parent(&rb)?;
                if self.nodes.contains_key(&rb) {
                    return Err(FsErrorKind::AlreadyExists);
                }
                self.nodes.insert(rb, src);
                Ok(Outcome::Done)
            }
            Op::ReadLink(p) => {
                let r = self.resolve(p, false)?;
                match self.lookup(&r)? {
                    Node::Symlink(_, t) => Ok(Outcome::Target(t.clone())),
                    _ => Err(FsErrorKind::InvalidPath),
                }
            }
        }
    }

    fn tree(&self) -> Tree {
        let mut groups: HashMap<u64, Vec<String>> = HashMap::new();
        let nodes = self
            .nodes
            .iter()
            .map(|(k, n)| {
                let seen = match n {
                    Node::Dir => Seen::Dir,
                    Node::File(id) => {
                        groups.entry(*id).or_default().push(k.clone());
                        Seen::File(self.contents[id].clone())
                    }
                    Node::Symlink(_, t) => Seen::Symlink(t.clone()),
                };
                (k.clone(), seen)
            })
            .collect();
        Tree {
            nodes,
            linked: link_groups(groups),
        }
    }
}

fn link_groups<K>(groups: HashMap<K, Vec<String>>) -> BTreeSet<Vec<String>> {
    groups
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

// -------------------------------------------------------------- the subject

fn outcome<T>(result: FsResult<T>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(v) => ok(v),
        Err(e) => Outcome::Err(e.kind()),
    }
}

fn meta(m: Metadata) -> Outcome {
    match m.file_type {
        FileType::Directory => Outcome::Meta(FileType::Directory, None, None),
        FileType::File => Outcome::Meta(FileType::File, Some(m.len), Some(m.nlink)),
        FileType::Symlink => Outcome::Meta(FileType::Symlink, Some(m.len), None),
    }
}

fn run_plain<B: Fs>(fs: &B, op: &Op) -> Option<Outcome> {
    let p = Path::new;
    Some(match op {
        Op::Write(a, d) => outcome(fs.write(p(a), d), |_| Outcome::Done),
        Op::Append(a, d) => outcome(fs.append(p(a), d), |_| Outcome::Done),
        Op::WriteRange(a, at, d) => outcome(fs.write_range(p(a), *at, d), |_| Outcome::Done),
        Op::Read(a) => outcome(fs.read(p(a)), Outcome::Bytes),
        Op::Truncate(a, n) => outcome(fs.truncate(p(a), *n), |_| Outcome::Done),
        Op::RemoveFile(a) => outcome(fs.remove_file(p(a)), |_| Outcome::Done),
        Op::CreateDir(a) => outcome(fs.create_dir(p(a)), |_| Outcome::Done),
        Op::CreateDirAll(a) => outcome(fs.create_dir_all(p(a)), |_| Outcome::Done),
        Op::RemoveDir(a) => outcome(fs.remove_dir(p(a)), |_| Outcome::Done),
        Op::RemoveDirAll(a) => outcome(fs.remove_dir_all(p(a)), |_| Outcome::Done),
        Op::Rename(a, b) => outcome(fs.rename(p(a), p(b)), |_| Outcome::Done),
        Op::Copy(a, b) => outcome(fs.copy(p(a), p(b)), |_| Outcome::Done),
        Op::ReadDir(a) => outcome(fs.read_dir(p(a)).and_then(|d| d.sorted_names()), |names| {
            Outcome::Names(
                names
                    .into_iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect(),
            )
        }),
        Op::Metadata(a) => outcome(fs.metadata(p(a)), meta),
        Op::Exists(a) => outcome(fs.exists(p(a)), Outcome::Bool),
        _ => return None,
    })
}

fn run_links<B: Fs + FsLink>(fs: &B, op: &Op) -> Outcome {
    let p = Path::new;
    if let Some(out) = run_plain(fs, op) {
        return out;
    }
    match op {
        Op::Symlink(t, l) => outcome(fs.symlink(p(t), p(l)), |_| Outcome::Done),
        Op::HardLink(a, b) => outcome(fs.hard_link(p(a), p(b)), |_| Outcome::Done),
        Op::ReadLink(a) => outcome(fs.read_link(p(a)), |t| {
            Outcome::Target(t.to_string_lossy().into_owned())
        }),
        Op::SymlinkMetadata(a) => outcome(fs.symlink_metadata(p(a)), meta),
        _ => unreachable!("run_plain handles the rest"),
    }
}

/// Walks the subject's whole tree without following links.
fn walk<B: Fs>(fs: &B, read_link: &dyn Fn(&Path) -> FsResult<String>) -> FsResult<Tree> {
    let mut nodes = BTreeMap::from([("/".to_string(), Seen::Dir)]);
    let mut groups: HashMap<u64, Vec<String>> = HashMap::new();
    let mut stack = vec!["/".to_string()];
    while let Some(dir) = stack.pop() {
        for entry in fs.read_dir(Path::new(&dir))? {
            let entry = entry?;
            let name = entry.name.to_string_lossy().into_owned();
            let path = if dir == "/" {
                format!("/{name}")
            } else {
                format!("{dir}/{name}")
            };
            let seen = match entry.file_type {
                FileType::Directory => {
                    stack.push(path.clone());
                    Seen::Dir
                }
                FileType::File => {
                    groups
                        .entry(fs.metadata(Path::new(&path))?.inode)
                        .or_default()
                        .push(path.clone());
                    Seen::File(fs.read(Path::new(&path))?)
                }
                FileType::Symlink => Seen::Symlink(read_link(Path::new(&path))?),
            };
            nodes.insert(path, seen);
        }
    }
    Ok(Tree {
        nodes,
        linked: link_groups(groups),
    })
}

fn run_sequence(
    ops: &[Op],
    run: &dyn Fn(&Op) -> Outcome,
    tree: &dyn Fn() -> FsResult<Tree>,
) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    for (step, op) in ops.iter().enumerate() {
        let before = model.clone();
        let expected = model.apply(op).unwrap_or_else(Outcome::Err);
        if matches!(expected, Outcome::Err(_)) {
            // A failed operation changes nothing.
            model = before;
        }
        let got = run(op);
        prop_assert_eq!(&got, &expected, "step {}: {:?}", step, op);
        let seen = tree().map_err(|e| TestCaseError::fail(format!("walking the tree: {e}")))?;
        let want = model.tree();
        prop_assert_eq!(seen, want, "tree after step {}: {:?}", step, op);
    }
    Ok(())
}

fn run_cases(cases: u32, with_links: bool, check: impl Fn(&[Op]) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec(op(with_links), 1..24);
    if let Err(e) = runner.run(&strategy, |ops| check(&ops)) {
        panic!("the subject diverged from the model: {e}");
    }
}

/// Runs `cases` random sequences of file and directory operations (no links)
/// on fresh subjects from `make`, comparing each step with the model.
pub fn check<B: Fs>(make: impl Fn() -> B, cases: u32) {
    run_cases(cases, false, |ops| {
        let fs = make();
        run_sequence(
            ops,
            &|op| run_plain(&fs, op).expect("no link operations generated"),
            &|| {
                walk(&fs, &|path| {
                    Err(anyfs::FsError::not_supported(path, "read_link"))
                })
            },
        )
    });
}

/// Like [`check`], with symlinks and hard links in the mix.
pub fn check_with_links<B: Fs + FsLink>(make: impl Fn() -> B, cases: u32) {
    run_cases(cases, true, |ops| {
        let fs = make();
        run_sequence(ops, &|op| run_links(&fs, op), &|| {
            walk(&fs, &|path| {
                fs.read_link(path).map(|t| t.to_string_lossy().into_owned())
            })
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_resolves_like_posix() {
        let mut m = Model::new();
        m.apply(&Op::CreateDirAll("/a/b".into())).unwrap();
        m.apply(&Op::Symlink("/a/b".into(), "/l".into())).unwrap();
        assert_eq!(m.resolve("/l/..", true).unwrap(), "/a");
        assert_eq!(m.resolve("/l", false).unwrap(), "/l");
        assert_eq!(m.resolve("/../..", true).unwrap(), "/");
        assert_eq!(m.resolve("/x/..", true), Err(FsErrorKind::NotFound));
    }
}
