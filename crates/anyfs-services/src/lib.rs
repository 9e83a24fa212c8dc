//! Test support: the real servers AnyFS's tests run against, started by
//! the tests themselves on loopback, once per test binary. With
//! `ANYFS_REQUIRE_SERVICES=1` (as CI sets it) a server that cannot be
//! started fails the test that asked for it; without it, the test is told
//! to skip.
//!
//! ```no_run
//! #[test]
//! fn stores_a_row() {
//!     let postgres = anyfs_services::require!(anyfs_services::postgres());
//!     let url = postgres.fresh_database();
//!     // ... connect to `url` ...
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod postgres;
mod seaweed;

pub use postgres::{Postgres, postgres};
pub use seaweed::{Seaweed, seaweed};

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a test service could not be started (the server is not installed,
/// it failed to start, ...).
#[derive(Debug, Clone)]
pub struct Unavailable {
    service: &'static str,
    reason: String,
}

impl Unavailable {
    /// `service` names the server ("PostgreSQL"), `reason` says what failed.
    pub fn new(service: &'static str, reason: impl Into<String>) -> Self {
        Self {
            service,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} for tests is unavailable: {} (install the test services with `bash scripts/install-test-services.sh`)",
            self.service, self.reason
        )
    }
}

impl std::error::Error for Unavailable {}

/// A program the install script put in the repository's virtualenv
/// (`.venv/test-services/bin`), of this checkout or, in a git worktree, of
/// the main checkout.
pub(crate) fn venv_program(name: &str) -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let installed = |root: &Path| root.join(".venv/test-services/bin").join(name);
    if installed(&repo).is_file() {
        return Some(installed(&repo));
    }
    main_checkout(&repo)
        .map(|main| installed(&main))
        .filter(|p| p.is_file())
}

/// For a git worktree (whose `.git` is a file naming
/// `<main>/.git/worktrees/<name>`), the main checkout.
fn main_checkout(repo: &Path) -> Option<PathBuf> {
    let link = std::fs::read_to_string(repo.join(".git")).ok()?;
    let gitdir = PathBuf::from(link.strip_prefix("gitdir:")?.trim());
    Some(gitdir.parent()?.parent()?.parent()?.to_path_buf())
}

/// The virtualenv's Python with the clients the tests drive (the MCP
/// Python SDK, openapi-spec-validator, schemathesis), as the install script
/// puts them there.
pub fn python_clients() -> Result<PathBuf, Unavailable> {
    let python = venv_program("python")
        .ok_or_else(|| Unavailable::new("The Python test clients", "no .venv/test-services"))?;
    let installed = std::process::Command::new(&python)
        .args(["-c", "import mcp, openapi_spec_validator"])
        .output()
        .map_err(|e| Unavailable::new("The Python test clients", e.to_string()))?;
    if !installed.status.success() {
        return Err(Unavailable::new(
            "The Python test clients",
            String::from_utf8_lossy(&installed.stderr)
                .trim()
                .to_string(),
        ));
    }
    Ok(python)
}

/// True when `ANYFS_REQUIRE_SERVICES=1`: a missing service then fails the
/// test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("ANYFS_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// The service, or `None` after printing why the calling test skips.
///
/// # Panics
///
/// When the service is unavailable and [`services_required`].
pub fn available<T>(service: Result<T, Unavailable>) -> Option<T> {
    match service {
        Ok(service) => Some(service),
        Err(why) if services_required() => {
            panic!("{why}; ANYFS_REQUIRE_SERVICES=1 forbids skipping")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The service from a `Result<_, Unavailable>`, or returns from the calling
/// test (which must return `()`) after printing why; panics instead when
/// `ANYFS_REQUIRE_SERVICES=1`. See [`available`].
#[macro_export]
macro_rules! require {
    ($service:expr) => {
        match $crate::available($service) {
            Some(service) => service,
            None => return,
        }
    };
}
