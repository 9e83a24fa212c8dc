//! [`PathFilter`]: glob rules over every path an operation touches.

use std::fmt;
use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{FsError, FsResult};
use crate::layer::Layer;
use crate::middleware::{Guarded, Policy, Request};

/// Allows only paths that match an `allow` glob and no `deny` glob.
///
/// ```
/// use anyfs::prelude::*;
/// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, PathFilterLayer};
///
/// let fs = FileStorage::new(
///     PathFilterLayer::builder()
///         .allow("/workspace/**")
///         .deny("**/.env")
///         .deny("**/secrets/**")
///         .build()?
///         .layer(MemoryBackend::new()),
/// );
/// fs.create_dir("/workspace")?;
/// fs.write("/workspace/a.txt", "fine")?;
/// assert_eq!(fs.write("/workspace/.env", "KEY=1").unwrap_err().kind(), FsErrorKind::AccessDenied);
/// assert_eq!(fs.write("/elsewhere.txt", "x").unwrap_err().kind(), FsErrorKind::AccessDenied);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Rules
///
/// - **Deny wins over allow.** A path matching any `deny` rule is refused
///   whatever the `allow` rules say, and a path matching no `allow` rule is
///   refused (deny by default). The order of rules does not matter. (The
///   seed design text says "first matching rule wins"; its own examples —
///   allow `/workspace/**`, then deny `**/.env` — only protect `.env` if
///   deny wins, so that is the rule.)
/// - Globs are matched against the whole normalized, absolute path; `*`
///   and `?` stay within one name, `**` spans any number. A rule must start
///   with `/` or `**`.
/// - A rule ending in `/**` also matches the directory itself:
///   `/workspace/**` allows listing `/workspace`, and `**/secrets/**` also
///   stops anyone renaming or removing a `secrets` directory as a whole.
/// - Every path of an operation is checked: both sides of `rename`, `copy`
///   and `hard_link`, the link of `symlink` (its target is data: following
///   it resolves to a path that is checked then), the path behind an inode
///   for inode operations. `read_dir` leaves out denied entries.
/// - A deny rule also covers everything below what it matches: `**/.env`
///   refuses `/w/.env/x` too.
/// - Resolution is checked too. A path may only leave a directory with
///   `..`, follow a symlink, or pass through a non-directory where no deny
///   rule matches and an allow rule matches or could match something below
///   (`/a` is on the way to `/a/b/**` and to `/a/*/c`; everything is on the
///   way to `**/x`). So `/workspace/secrets/x/../../a.txt`, or a link whose
///   target goes through `secrets` that way, is refused before anything is
///   looked up: the answer does not show whether `secrets/x` exists. A
///   link stored in a denied directory is never followed. The refusal
///   names the path asked for, with the same reason as any other refusal.
///   (A plain descent is judged by the path it ends at.)
/// - Paths with `..`, NUL, or a relative form are refused before the rules
///   are consulted; matching is case-sensitive unless
///   [`case_insensitive`](PathFilterBuilder::case_insensitive) is set (use
///   it over a case-insensitive host filesystem).
///
/// Order: outside the layers that store or count (quota, encryption), so a
/// denied path never reaches them.
pub type PathFilter<B> = Guarded<B, PathFilterLayer>;

/// The compiled rules: the layer and policy of [`PathFilter`].
#[derive(Clone)]
pub struct PathFilterLayer {
    deny: RuleSet,
    allow: RuleSet,
    /// Directories on the way to what the allow rules match: each proper
    /// prefix of an allow rule, and everything below a `**` in one.
    reach: GlobSet,
    /// Directories above (or at) what the deny rules match: each proper
    /// prefix of a deny rule, and everything below a `**` in one. Nothing
    /// below a directory outside these can be denied.
    deny_reach: GlobSet,
    rules: Vec<(bool, String)>,
    /// Set when the rules did not compile: every path is refused with it.
    broken: Option<String>,
}

impl fmt::Debug for PathFilterLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathFilterLayer")
            .field("rules", &self.rules)
            .field("broken", &self.broken)
            .finish()
    }
}

/// A rule that is not a valid glob, from [`PathFilterBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path filter rule `{pattern}`: {reason}")]
pub struct PathFilterError {
    /// The rule as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Builds a [`PathFilterLayer`].
#[derive(Debug, Clone, Default)]
pub struct PathFilterBuilder {
    rules: Vec<(bool, String)>,
    case_insensitive: bool,
}

/// The one reason for every refusal: which rule, or which check (the path
/// itself, or a directory or link a resolution passes through), would say
/// something about what is hidden.
const REFUSED: &str = "the path filter does not allow it";

impl PathFilterLayer {
    /// A builder with no rules (which denies everything).
    pub fn builder() -> PathFilterBuilder {
        PathFilterBuilder::default()
    }

    /// Whether `path` (normalized and absolute) is allowed.
    pub fn is_allowed(&self, path: &Path) -> bool {
        self.decide(path).is_ok()
    }

    /// Whether a path resolution may pass through `path`: not if a deny
    /// rule matches it; yes if an allow rule matches it or could match
    /// something below it. The reason is that of `decide`, word for word:
    /// which check refused must not show.
    fn passable(&self, path: &Path) -> Result<(), String> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let bytes = path.as_os_str().as_encoded_bytes();
        if self.deny.matches(bytes) {
            return Err(REFUSED.into());
        }
        if self.allow.matches(bytes) || self.reach.is_match_candidate(&Candidate::from_bytes(bytes))
        {
            Ok(())
        } else {
            Err(REFUSED.into())
        }
    }

    /// Whether some path strictly below the directory `dir` may be refused
    /// although `dir` itself is not: a deny rule can match below it, or no
    /// `/…/**` allow rule covers everything below it. Conservative: `true`
    /// only costs a walk of the directory.
    pub fn may_refuse_below(&self, dir: &Path) -> bool {
        if self.broken.is_some() {
            return true;
        }
        let bytes = dir.as_os_str().as_encoded_bytes();
        let root = bytes == b"/";
        let denied_below = if root {
            self.rules.iter().any(|(allow, _)| !allow)
        } else {
            self.deny_reach
                .is_match_candidate(&Candidate::from_bytes(bytes))
        };
        let wholly_allowed = self.allow.shapes.iter().any(|shape| {
            matches!(shape, Shape::Under(_)) && shape.matches(if root { b"" } else { bytes })
        });
        denied_below || !wholly_allowed
    }

    fn decide(&self, path: &Path) -> Result<(), String> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let bytes = path.as_os_str().as_encoded_bytes();
        if self.deny.matches(bytes) || !self.allow.matches(bytes) {
            Err(REFUSED.into())
        } else {
            Ok(())
        }
    }
}

impl PathFilterBuilder {
    /// Allows paths matching `glob` (unless a deny rule matches).
    pub fn allow(mut self, glob: impl Into<String>) -> Self {
        self.rules.push((true, glob.into()));
        self
    }
    /// Denies paths matching `glob`, whatever the allow rules say.
    pub fn deny(mut self, glob: impl Into<String>) -> Self {
        self.rules.push((false, glob.into()));
        self
    }
    /// Matches without regard to case (for case-insensitive hosts).
    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    /// Compiles the rules. A rule that is not a valid glob, or not anchored
    /// at `/` or `**`, is an error naming it.
    pub fn build(self) -> Result<PathFilterLayer, PathFilterError> {
        let set = |allow: bool| {
            RuleSet::compile(
                self.rules
                    .iter()
                    .filter(|r| r.0 == allow)
                    .map(|r| r.1.as_str()),
                self.case_insensitive,
                // A deny rule covers what is below what it matches.
                !allow,
            )
        };
        let reach = |allow: bool| {
            let mut reach = GlobSetBuilder::new();
            for (_, pattern) in self.rules.iter().filter(|r| r.0 == allow) {
                for glob in reach_globs(pattern) {
                    match compile_glob(pattern, &glob, self.case_insensitive) {
                        Ok(glob) => {
                            reach.add(glob);
                        }
                        // A prefix that is no glob of its own (an
                        // alternation cut in two): an allow rule reaches
                        // nothing through it (closed); a deny rule may
                        // match below anything (closed too).
                        Err(_) if !allow => {
                            reach.add(compile_glob(pattern, "/**", false)?);
                        }
                        Err(_) => {}
                    }
                }
            }
            Ok::<_, PathFilterError>(reach.build().unwrap_or_else(|_| GlobSet::empty()))
        };
        Ok(PathFilterLayer {
            deny: set(false)?,
            allow: set(true)?,
            reach: reach(true)?,
            deny_reach: reach(false)?,
            rules: self.rules,
            broken: None,
        })
    }
}

/// Rules of one kind (allow or deny). The common shapes — a directory and
/// everything under it, a name anywhere, a last name, an exact path — are
/// decided by comparing names, which is several times faster than running
/// a glob; everything else goes to globset. Both give the same answers (a
/// property test holds them to it).
#[derive(Debug, Clone)]
struct RuleSet {
    shapes: Vec<Shape>,
    globs: GlobSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// `/dir/**` (and so `/dir`); `/**` is everything.
    Under(Vec<u8>),
    /// `**/name/**` (and so `**/name`): some name in the path is `name`.
    Within(Vec<u8>),
    /// `**/name`: the last name is `name`.
    Named(Vec<u8>),
    /// A path without wildcards.
    Exact(Vec<u8>),
}

/// The globs for the directories a walk may pass through on its way to
/// what `pattern` (an allow rule) matches: each proper prefix of it
/// (`/a`, `/a/b` for `/a/b/*.rs`), and everything below the part before a
/// `**` (`/**` for `**/x`) or before a name with a character class (a
/// class such as `[!x]` also matches `/`, so `/a[!x]b` matches `/a/b`).
fn reach_globs(pattern: &str) -> Vec<String> {
    let names: Vec<&str> = pattern.split('/').filter(|n| !n.is_empty()).collect();
    let mut globs = Vec::new();
    for k in 0..names.len() {
        let prefix = format!("/{}", names[..k].join("/"));
        let prefix = if k == 0 { String::new() } else { prefix };
        // Only a whole `**` (`**.csv` is one name), or a class, spans names.
        if names[k] == "**" || names[k].contains('[') {
            globs.push(format!("{prefix}/**"));
            break;
        }
        if k + 1 < names.len() {
            globs.push(format!("{prefix}/{}", names[k]));
        }
    }
    globs
}

impl Shape {
    /// The shape of a pattern, if it has one of the fast shapes.
    fn of(pattern: &str) -> Option<Shape> {
        let literal = |s: &str| !s.bytes().any(|b| b"*?[]{}\\".contains(&b));
        let name = |s: &str| literal(s) && !s.is_empty() && !s.contains('/');
        if pattern == "/**" {
            return Some(Shape::Under(Vec::new()));
        }
        if let Some(dir) = pattern.strip_suffix("/**") {
            if let Some(n) = dir.strip_prefix("**/") {
                return name(n).then(|| Shape::Within(n.into()));
            }
            let clean =
                dir.starts_with('/') && dir.len() > 1 && !dir.contains("//") && !dir.ends_with('/');
            return (clean && literal(dir)).then(|| Shape::Under(dir.into()));
        }
        if let Some(n) = pattern.strip_prefix("**/") {
            return name(n).then(|| Shape::Named(n.into()));
        }
        (pattern.starts_with('/') && literal(pattern)).then(|| Shape::Exact(pattern.into()))
    }

    fn matches(&self, path: &[u8]) -> bool {
        match self {
            Shape::Under(dir) => {
                path.starts_with(dir)
                    && (path.len() == dir.len() || path[dir.len()] == b'/' || dir.is_empty())
            }
            Shape::Within(name) => path.split(|&b| b == b'/').any(|n| n == name.as_slice()),
            Shape::Named(name) => path.rsplit(|&b| b == b'/').next() == Some(name.as_slice()),
            Shape::Exact(exact) => path == exact.as_slice(),
        }
    }
}

impl RuleSet {
    /// With `below`, each rule also matches everything below what it
    /// matches (`**/.env` then covers `/w/.env/x`).
    fn compile<'a>(
        patterns: impl Iterator<Item = &'a str>,
        case_insensitive: bool,
        below: bool,
    ) -> Result<RuleSet, PathFilterError> {
        let mut shapes = Vec::new();
        let mut globs = GlobSetBuilder::new();
        for pattern in patterns {
            let mut expanded = expand(pattern)?;
            if !case_insensitive && let Some(shape) = Shape::of(pattern) {
                shapes.push(match shape {
                    Shape::Named(name) if below => Shape::Within(name),
                    // Below the root is everything.
                    Shape::Exact(path) if below && path == b"/" => Shape::Under(Vec::new()),
                    Shape::Exact(path) if below => Shape::Under(path),
                    shape => shape,
                });
                continue;
            }
            if below {
                let under: Vec<String> = expanded
                    .iter()
                    .filter(|g| !g.ends_with("/**"))
                    .map(|g| format!("{}/**", g.trim_end_matches('/')))
                    .collect();
                expanded.extend(under);
            }
            for glob in expanded {
                globs.add(compile_glob(pattern, &glob, case_insensitive)?);
            }
        }
        let globs = globs.build().map_err(|e| PathFilterError {
            pattern: "(the rule set)".to_string(),
            reason: e.to_string(),
        })?;
        Ok(RuleSet { shapes, globs })
    }

    fn matches(&self, path: &[u8]) -> bool {
        self.shapes.iter().any(|s| s.matches(path))
            || (!self.globs.is_empty()
                && self.globs.is_match_candidate(&Candidate::from_bytes(path)))
    }
}

fn compile_glob(
    pattern: &str,
    glob: &str,
    case_insensitive: bool,
) -> Result<globset::Glob, PathFilterError> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .case_insensitive(case_insensitive)
        .backslash_escape(false)
        .build()
        .map_err(|e| PathFilterError {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

/// A rule and, for `…/**`, the directory itself.
fn expand(pattern: &str) -> Result<Vec<String>, PathFilterError> {
    if !(pattern.starts_with('/') || pattern.starts_with("**")) {
        return Err(PathFilterError {
            pattern: pattern.to_string(),
            reason: "rules match absolute paths: start it with `/` or `**/`".into(),
        });
    }
    if pattern.len() > 1 && pattern.ends_with('/') {
        return Err(PathFilterError {
            pattern: pattern.to_string(),
            reason: "rules match paths, which never end in `/`: write `/dir` or `/dir/**`".into(),
        });
    }
    if pattern.contains('\0') {
        return Err(PathFilterError {
            pattern: pattern.replace('\0', "\\0"),
            reason: "a rule cannot contain a NUL byte".into(),
        });
    }
    let mut globs = vec![pattern.to_string()];
    if let Some(dir) = pattern.strip_suffix("/**") {
        globs.push(if dir.is_empty() {
            "/".into()
        } else {
            dir.into()
        });
    }
    Ok(globs)
}

/// So that `.layer(PathFilterLayer::builder()…build())` reads as in the
/// design examples: an invalid rule set becomes a filter that refuses every
/// path, each time naming the bad rule. Use `build()?` to hear about it at
/// once instead.
impl<B> Layer<B> for Result<PathFilterLayer, PathFilterError> {
    type Backend = PathFilter<B>;
    fn layer(&self, backend: B) -> PathFilter<B> {
        let empty = RuleSet {
            shapes: Vec::new(),
            globs: GlobSet::empty(),
        };
        let policy = self.clone().unwrap_or_else(|err| PathFilterLayer {
            deny: empty.clone(),
            allow: empty,
            reach: GlobSet::empty(),
            deny_reach: GlobSet::empty(),
            rules: Vec::new(),
            broken: Some(format!("the path filter is invalid: {err}")),
        });
        Guarded::with_policy(backend, policy)
    }
}

impl Policy for PathFilterLayer {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        for path in request.paths() {
            self.decide(path)
                .map_err(|reason| FsError::access_denied(path.to_path_buf(), reason))?;
        }
        Ok(())
    }

    fn shows(&self, path: &Path) -> bool {
        self.is_allowed(path)
    }

    fn judges_traversal(&self) -> bool {
        true
    }

    fn judges_below(&self, dir: &Path) -> bool {
        self.may_refuse_below(dir)
    }

    /// A resolution passes only through paths the rules leave reachable,
    /// so that a path through a denied directory (`/secrets/x/../ok`, or a
    /// symlink whose target goes through one) is refused whether or not
    /// the directory exists: nothing about it shows.
    fn traverse(&self, path: &Path) -> FsResult<()> {
        self.passable(path)
            .map_err(|reason| FsError::access_denied(path.to_path_buf(), reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn glob_only(pattern: &str) -> GlobSet {
        let mut set = GlobSetBuilder::new();
        for glob in expand(pattern).unwrap() {
            set.add(compile_glob(pattern, &glob, false).unwrap());
        }
        set.build().unwrap()
    }

    #[test]
    fn shapes_are_recognised() {
        assert_eq!(
            Shape::of("/workspace/**"),
            Some(Shape::Under(b"/workspace".to_vec()))
        );
        assert_eq!(Shape::of("/**"), Some(Shape::Under(Vec::new())));
        assert_eq!(
            Shape::of("**/secrets/**"),
            Some(Shape::Within(b"secrets".to_vec()))
        );
        assert_eq!(Shape::of("**/.env"), Some(Shape::Named(b".env".to_vec())));
        assert_eq!(
            Shape::of("/etc/passwd"),
            Some(Shape::Exact(b"/etc/passwd".to_vec()))
        );
        for glob in [
            "**/*.key",
            "/a/*/b",
            "/a/**/b",
            "**/a/b",
            "/a{b,c}/**",
            "**/a/b/**",
        ] {
            assert_eq!(Shape::of(glob), None, "{glob}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", ".env", "a.b", "secrets", "x y", "é"])
            .prop_map(String::from)
    }

    fn rule() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(name(), 0..3)
                .prop_map(|v| format!("/{}/**", v.join("/")).replace("//", "/")),
            name().prop_map(|n| format!("**/{n}/**")),
            name().prop_map(|n| format!("**/{n}")),
            prop::collection::vec(name(), 1..3).prop_map(|v| format!("/{}", v.join("/"))),
        ]
    }

    proptest! {
        #[test]
        fn fast_shapes_agree_with_globset(rule in rule(), names in prop::collection::vec(name(), 0..4)) {
            let path = format!("/{}", names.join("/"));
            let fast = Shape::of(&rule).expect("generated rules have a fast shape");
            let slow = glob_only(&rule).is_match(&path);
            prop_assert_eq!(fast.matches(path.as_bytes()), slow, "rule {} path {}", rule, path);
        }
    }
}
