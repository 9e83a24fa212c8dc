//! [`Tracing`]: one structured event per operation, and an audit sink.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::{FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Level, LevelFilter, Metadata};

use crate::error::{FsErrorKind, FsResult};
use crate::middleware::{Guarded, Outcome, Policy, Request};

/// Emits one [`tracing`] event per operation — operation, path (and second
/// path), outcome (`ok` or the error kind), error message, bytes and
/// duration — and hands the same record to an optional [`AuditSink`].
///
/// ```
/// use anyfs::prelude::*;
/// use anyfs::{FileStorage, MemoryAuditSink, MemoryBackend, TracingLayer};
/// use std::sync::Arc;
///
/// let audit = Arc::new(MemoryAuditSink::default());
/// let fs = FileStorage::new(
///     TracingLayer::new()
///         .with_target("agent_fs")
///         .with_level(tracing::Level::DEBUG)
///         .with_sink(audit.clone())
///         .layer(MemoryBackend::new()),
/// );
/// fs.write("/notes.txt", "hello")?;
/// assert!(fs.read("/missing").is_err());
/// let records = audit.records();
/// assert_eq!(records[0].operation, "write");
/// assert_eq!(records[0].bytes, 5);
/// assert!(records[1].error.as_deref().unwrap().contains("not found"));
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// File contents are never logged. Refusals by inner layers are recorded
/// with their error kind ([`AuditRecord::is_denial`] tells them apart).
///
/// Order: outermost, so that it records every call and every refusal.
pub type Tracing<B> = Guarded<B, TracingLayer>;

/// Receives one [`AuditRecord`] per operation, e.g. to persist an audit log.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one operation. Called on the caller's thread, after the
    /// operation; keep it short or hand off.
    fn record(&self, record: AuditRecord);
}

impl<S: AuditSink + ?Sized> AuditSink for Arc<S> {
    fn record(&self, record: AuditRecord) {
        (**self).record(record)
    }
}

/// One operation, as audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it finished.
    pub time: SystemTime,
    /// The operation (trait method) name.
    pub operation: &'static str,
    /// The path acted on, if any.
    pub path: Option<PathBuf>,
    /// The second path (rename/copy destination, new hard link).
    pub to: Option<PathBuf>,
    /// `None` if it succeeded, else the kind of error.
    pub error_kind: Option<FsErrorKind>,
    /// The error message (no host paths, no secrets), if it failed.
    pub error: Option<String>,
    /// Bytes read or written.
    pub bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

impl AuditRecord {
    /// Whether a policy refused the operation (as opposed to it failing).
    pub fn is_denial(&self) -> bool {
        matches!(
            self.error_kind,
            Some(
                FsErrorKind::AccessDenied
                    | FsErrorKind::PermissionDenied
                    | FsErrorKind::ReadOnly
                    | FsErrorKind::QuotaExceeded
                    | FsErrorKind::FileSizeExceeded
                    | FsErrorKind::RateLimitExceeded
            )
        )
    }
}

/// An [`AuditSink`] that keeps records in memory (tests, small tools).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditSink {
    /// Every record so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().clone()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, record: AuditRecord) {
        self.records.lock().push(record);
    }
}

/// The layer (and policy) of [`Tracing`].
#[derive(Clone)]
pub struct TracingLayer {
    level: Level,
    target: &'static str,
    callsite: &'static EventCallsite,
    sink: Option<Arc<dyn AuditSink>>,
}

impl fmt::Debug for TracingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingLayer")
            .field("target", &self.target)
            .field("level", &self.level)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl Default for TracingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TracingLayer {
    /// Events at `INFO` with target `anyfs`, no sink.
    pub fn new() -> Self {
        Self::with(Level::INFO, "anyfs", None)
    }

    fn with(level: Level, target: &'static str, sink: Option<Arc<dyn AuditSink>>) -> Self {
        Self {
            level,
            target,
            callsite: callsite(target, level),
            sink,
        }
    }

    /// The target events are emitted under (for filtering).
    pub fn with_target(self, target: impl Into<String>) -> Self {
        let target = intern(target.into());
        Self::with(self.level, target, self.sink)
    }

    /// The level events are emitted at.
    pub fn with_level(self, level: Level) -> Self {
        Self::with(level, self.target, self.sink)
    }

    /// Also hands every record to `sink`.
    pub fn with_sink(self, sink: impl AuditSink) -> Self {
        Self::with(self.level, self.target, Some(Arc::new(sink)))
    }

    fn emit(&self, request: &Request<'_>, outcome: &Outcome<'_>) {
        if self.level > LevelFilter::current() {
            return;
        }
        let meta = self.callsite.metadata();
        tracing_core::dispatcher::get_default(|dispatch| {
            if !dispatch.enabled(meta) {
                return;
            }
            let fields = meta.fields();
            let field = |name| fields.field(name).expect("declared in FIELDS");
            let op = request.op.name();
            let path = request.path.map(Path::display);
            let to = request.to.map(Path::display);
            let result = match outcome.result {
                Ok(()) => "ok".to_string(),
                Err(e) => e.kind().to_string(),
            };
            let error = outcome.result.err().map(ToString::to_string);
            let micros = outcome.elapsed.as_micros() as u64;
            let message = match &path {
                Some(p) => format!("{op} {p}: {result}"),
                None => format!("{op}: {result}"),
            };
            let path_text = path.map(|p| p.to_string());
            let to_text = to.map(|p| p.to_string());
            let message = message.as_str();
            let result = result.as_str();
            let path_text = path_text.as_deref();
            let to_text = to_text.as_deref();
            let error = error.as_deref();
            let values: [(&tracing_core::field::Field, Option<&dyn Value>); 8] = [
                (&field("message"), Some(&message as &dyn Value)),
                (&field("op"), Some(&op as &dyn Value)),
                (&field("path"), path_text.as_ref().map(|p| p as &dyn Value)),
                (&field("to"), to_text.as_ref().map(|p| p as &dyn Value)),
                (&field("outcome"), Some(&result as &dyn Value)),
                (&field("error"), error.as_ref().map(|e| e as &dyn Value)),
                (&field("bytes"), Some(&outcome.bytes as &dyn Value)),
                (&field("duration_us"), Some(&micros as &dyn Value)),
            ];
            dispatch.event(&Event::new(meta, &fields.value_set(&values)));
        });
    }
}

impl Policy for TracingLayer {
    fn check(&self, _request: &Request<'_>) -> FsResult<()> {
        Ok(())
    }

    fn observes(&self) -> bool {
        // Timing is only worth taking when someone will see it.
        self.sink.is_some() || self.level <= LevelFilter::current()
    }

    fn observe(&self, request: &Request<'_>, outcome: &Outcome<'_>) {
        self.emit(request, outcome);
        if let Some(sink) = &self.sink {
            sink.record(AuditRecord {
                time: SystemTime::now(),
                operation: request.op.name(),
                path: request.path.map(Path::to_path_buf),
                to: request.to.map(Path::to_path_buf),
                error_kind: outcome.result.err().map(|e| e.kind()),
                error: outcome.result.err().map(ToString::to_string),
                bytes: outcome.bytes,
                duration: outcome.elapsed,
            });
        }
    }
}

// `tracing`'s macros need a target and level fixed at compile time; a
// layer's are chosen at run time, so each (target, level) pair gets one
// callsite of its own, made once and kept for the life of the process.

const FIELDS: &[&str] = &[
    "message",
    "op",
    "path",
    "to",
    "outcome",
    "error",
    "bytes",
    "duration_us",
];

struct EventCallsite {
    meta: OnceLock<Metadata<'static>>,
}

impl Callsite for EventCallsite {
    fn set_interest(&self, _interest: Interest) {
        // Interest is asked of the dispatcher on every event instead.
    }
    fn metadata(&self) -> &Metadata<'_> {
        self.meta
            .get()
            .expect("metadata is set before registration")
    }
}

static CALLSITES: Mutex<Vec<(&'static str, Level, &'static EventCallsite)>> =
    Mutex::new(Vec::new());

fn intern(target: String) -> &'static str {
    let callsites = CALLSITES.lock();
    if let Some((t, ..)) = callsites.iter().find(|(t, ..)| *t == target) {
        return t;
    }
    drop(callsites);
    Box::leak(target.into_boxed_str())
}

fn callsite(target: &'static str, level: Level) -> &'static EventCallsite {
    let mut callsites = CALLSITES.lock();
    if let Some((.., cs)) = callsites
        .iter()
        .find(|(t, l, _)| *t == target && *l == level)
    {
        return cs;
    }
    let cs: &'static EventCallsite = Box::leak(Box::new(EventCallsite {
        meta: OnceLock::new(),
    }));
    let meta = Metadata::new(
        "anyfs operation",
        target,
        level,
        Some(file!()),
        Some(line!()),
        Some(module_path!()),
        FieldSet::new(FIELDS, Identifier(cs)),
        Kind::EVENT,
    );
    let _ = cs.meta.set(meta);
    tracing_core::callsite::register(cs);
    callsites.push((target, level, cs));
    cs
}
