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
    allow: GlobSet,
    deny: GlobSet,
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

impl PathFilterLayer {
    /// A builder with no rules (which denies everything).
    pub fn builder() -> PathFilterBuilder {
        PathFilterBuilder::default()
    }

    /// Wraps `backend`.
    pub fn layer<B>(self, backend: B) -> PathFilter<B> {
        Guarded::with_policy(backend, self)
    }

    /// Whether `path` (normalized and absolute) is allowed.
    pub fn is_allowed(&self, path: &Path) -> bool {
        self.decide(path).is_ok()
    }

    fn decide(&self, path: &Path) -> Result<(), String> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let candidate = Candidate::new(path);
        if self.deny.is_match_candidate(&candidate) {
            return Err("the path matches a deny rule".into());
        }
        if !self.allow.is_match_candidate(&candidate) {
            return Err("the path matches no allow rule".into());
        }
        Ok(())
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
        let mut allow = GlobSetBuilder::new();
        let mut deny = GlobSetBuilder::new();
        for (is_allow, pattern) in &self.rules {
            let set = if *is_allow { &mut allow } else { &mut deny };
            for glob in expand(pattern)? {
                let compiled = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .case_insensitive(self.case_insensitive)
                    .backslash_escape(false)
                    .build()
                    .map_err(|e| PathFilterError {
                        pattern: pattern.clone(),
                        reason: e.kind().to_string(),
                    })?;
                set.add(compiled);
            }
        }
        let finish = |b: GlobSetBuilder, pattern: &str| {
            b.build().map_err(|e| PathFilterError {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })
        };
        Ok(PathFilterLayer {
            allow: finish(allow, "allow rules")?,
            deny: finish(deny, "deny rules")?,
            rules: self.rules,
            broken: None,
        })
    }
}

/// A rule and, for `…/**`, the directory itself.
fn expand(pattern: &str) -> Result<Vec<String>, PathFilterError> {
    if !(pattern.starts_with('/') || pattern.starts_with("**")) {
        return Err(PathFilterError {
            pattern: pattern.to_string(),
            reason: "rules match absolute paths: start it with `/` or `**/`".into(),
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

impl<B> Layer<B> for PathFilterLayer {
    type Backend = PathFilter<B>;
    fn layer(self, backend: B) -> PathFilter<B> {
        Guarded::with_policy(backend, self)
    }
}

/// So that `.layer(PathFilterLayer::builder()…build())` reads as in the
/// design examples: an invalid rule set becomes a filter that refuses every
/// path, each time naming the bad rule. Use `build()?` to hear about it at
/// once instead.
impl<B> Layer<B> for Result<PathFilterLayer, PathFilterError> {
    type Backend = PathFilter<B>;
    fn layer(self, backend: B) -> PathFilter<B> {
        let policy = self.unwrap_or_else(|err| PathFilterLayer {
            allow: GlobSet::empty(),
            deny: GlobSet::empty(),
            rules: Vec::new(),
            broken: Some(format!("the path filter is invalid: {err}")),
        });
        Guarded::with_policy(backend, policy)
    }
}

impl Policy for PathFilterLayer {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        for path in request.paths() {
            self.decide(path).map_err(|reason| FsError::AccessDenied {
                path: path.to_path_buf(),
                reason,
            })?;
        }
        Ok(())
    }

    fn shows(&self, path: &Path) -> bool {
        self.is_allowed(path)
    }
}
