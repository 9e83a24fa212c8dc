//! [`ObjectStore`]: the bucket, through OpenDAL's S3 service, as the rest of
//! the crate uses it: objects created once (`If-None-Match: *`) and never
//! replaced, read whole or by byte range, listed and deleted by the garbage
//! collector. Synchronous: every call waits on the runtime it was given,
//! and must be made from a thread that is not one of its workers.
//!
//! [`ObjectStore::connect`] checks first that the store honours the
//! preconditions the design relies on, and refuses one that does not.

use std::future::IntoFuture;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyfs::{FsError, FsResult};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, services};
use tokio::runtime::Handle;

use crate::config::ObjectStoreConfig;
use crate::unavailable::{Service, Unavailable};

/// An S3-compatible bucket (or a prefix of one) that has been checked to
/// honour `If-None-Match` and `If-Match`.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    op: Operator,
    runtime: Handle,
    /// For messages: the endpoint without credentials, and the bucket.
    endpoint: String,
}

/// One object found by [`ObjectStore::list`].
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The name, relative to the store's prefix.
    pub(crate) name: String,
    /// When it was written, where the store says.
    pub(crate) modified: Option<SystemTime>,
}

impl ObjectStore {
    /// Connects to the store `config` describes, with the requests run on
    /// `runtime`, and checks its preconditions (see [`check`](Self::check)).
    pub fn connect(config: &ObjectStoreConfig, runtime: Handle) -> FsResult<Self> {
        let store = Self::without_check(config, runtime)?;
        store.check()?;
        Ok(store)
    }

    /// The store, not checked yet.
    pub(crate) fn without_check(config: &ObjectStoreConfig, runtime: Handle) -> FsResult<Self> {
        opendal::install_default();
        let endpoint = format!(
            "{} (bucket {})",
            config.endpoint_for_display(),
            config.bucket()
        );
        let mut builder = services::S3::default()
            .bucket(config.bucket())
            .root(&format!("/{}", config.prefix()))
            .region(config.region())
            // Only what the configuration says: no ~/.aws files, no
            // instance metadata service.
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(url) = config.endpoint() {
            builder = builder.endpoint(url);
        }
        if let Some((id, secret)) = config.credentials() {
            builder = builder.access_key_id(id).secret_access_key(secret);
        }
        let op = Operator::new(builder)
            .map_err(|e| {
                FsError::backend(
                    "/",
                    "configure the object store",
                    format!(
                        "the object store at {endpoint} cannot be used: {}",
                        e.kind()
                    ),
                )
            })?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(30))
                    .with_io_timeout(Duration::from_secs(10)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(2)
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_millis(500))
                    .with_jitter(),
            );
        Ok(Self {
            op,
            runtime,
            endpoint,
        })
    }

    /// Checks on a probe object of its own (under `probes/`) that the store
    /// refuses an upload with `If-None-Match: *` over an object that
    /// exists, and one with an `If-Match` that does not match, while it
    /// takes one that does. A store that ignores these would let an upload
    /// replace a blob; it is refused with an error naming it.
    pub fn check(&self) -> FsResult<()> {
        let name = format!("probes/{}", uuid::Uuid::new_v4().simple());
        let op = "check the object store";
        let refuse = |what: &str| {
            FsError::backend(
                "/",
                op,
                format!(
                    "the object store at {} ignores {what}, which AnyFS relies on so that no \
                     upload replaces a blob; refusing to use it",
                    self.endpoint
                ),
            )
        };
        let probe = self.run(async {
            let first = self
                .op
                .write_with(&name, b"probe 1".to_vec())
                .if_not_exists(true)
                .await?;
            let replaced = self
                .op
                .write_with(&name, b"probe 2".to_vec())
                .if_not_exists(true)
                .await;
            let etag = match first.etag() {
                Some(etag) => etag.to_owned(),
                None => self
                    .op
                    .stat(&name)
                    .await?
                    .etag()
                    .unwrap_or_default()
                    .to_owned(),
            };
            let mismatched = self
                .op
                .write_with(&name, b"probe 3".to_vec())
                .if_match("\"00000000000000000000000000000000\"")
                .await;
            let matched = self
                .op
                .write_with(&name, b"probe 4".to_vec())
                .if_match(&etag)
                .await;
            let content = self.op.read(&name).await?.to_vec();
            self.op.delete(&name).await?;
            Ok((replaced, mismatched, matched, content))
        });
        let (replaced, mismatched, matched, content) =
            probe.map_err(|e| self.error(Path::new("/"), op, e))?;
        let refused = |r: &opendal::Result<opendal::Metadata>| matches!(r, Err(e) if e.kind() == ErrorKind::ConditionNotMatch);
        if !refused(&replaced) {
            return Err(refuse("If-None-Match"));
        }
        if !refused(&mismatched) || matched.is_err() || content != b"probe 4" {
            return Err(refuse("If-Match"));
        }
        Ok(())
    }

    /// Creates `name` with `data`; fails with `Conflict` if it exists
    /// (nothing is ever replaced).
    ///
    /// An upload whose answer was lost (the connection closed, a timeout,
    /// a 5xx) is sent again, and the store then refuses it: the object
    /// exists, written by the first attempt. Names are random, so an
    /// object that holds exactly `data` is this upload's own, and that is
    /// a success; anything else under the name is a `Conflict`.
    pub(crate) fn put_new(&self, path: &Path, name: &str, data: Vec<u8>) -> FsResult<()> {
        let op = "upload a blob";
        let data = opendal::Buffer::from(data);
        let Err(e) = self.run(self.op.write_with(name, data.clone()).if_not_exists(true)) else {
            return Ok(());
        };
        if e.kind() != ErrorKind::ConditionNotMatch {
            return Err(self.error(path, op, e));
        }
        match self.run(self.op.read(name)) {
            Ok(stored) if stored.to_bytes() == data.to_bytes() => Ok(()),
            Ok(_) => Err(FsError::conflict(
                path,
                format!("blob {name} already exists"),
            )),
            Err(e) => Err(self.error(path, op, e)),
        }
    }

    /// Bytes `range` of `name`: `IntegrityError` if the object is shorter.
    pub(crate) fn get_range(
        &self,
        path: &Path,
        name: &str,
        range: Range<u64>,
    ) -> FsResult<Vec<u8>> {
        let op = "read a blob";
        let end = range.end;
        let read = self.run(self.op.read_with(name).range(range));
        let err = match read {
            Ok(buffer) => return Ok(buffer.to_vec()),
            Err(err) => err,
        };
        match err.kind() {
            ErrorKind::NotFound => Err(FsError::backend(
                path,
                op,
                format!(
                    "blob {name} is missing from the object store at {}",
                    self.endpoint
                ),
            )),
            ErrorKind::RangeNotSatisfied => Err(FsError::integrity(path)),
            // The store sent less than asked for: a cut-off object, or a
            // connection that broke; the object's size tells which.
            _ => match self.run(self.op.stat(name)) {
                Ok(meta) if meta.content_length() < end => Err(FsError::integrity(path)),
                _ => Err(self.error(path, op, err)),
            },
        }
    }

    /// Every object under `dir` (relative to the prefix), with when it was
    /// written.
    pub(crate) fn list(&self, dir: &str) -> FsResult<Vec<Listed>> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        let entries = self
            .run(self.op.list_with(&dir).recursive(true))
            .map_err(|e| self.error(Path::new("/"), "list blobs", e))?;
        Ok(entries
            .into_iter()
            .filter(|entry| entry.metadata().is_file())
            .map(|entry| Listed {
                modified: entry.metadata().last_modified().map(SystemTime::from),
                name: entry.path().to_owned(),
            })
            .collect())
    }

    /// Deletes `name` (fine if it is already gone).
    pub(crate) fn delete(&self, name: &str) -> FsResult<()> {
        self.run(self.op.delete(name))
            .map_err(|e| self.error(Path::new("/"), "delete a blob", e))
    }

    /// Writes `data` to `name` whatever is there: for tests that tamper
    /// with stored blobs, never for the backend itself.
    #[doc(hidden)]
    pub fn overwrite_for_tests(&self, name: &str, data: Vec<u8>) -> FsResult<()> {
        self.run(self.op.write(name, data))
            .map(drop)
            .map_err(|e| self.error(Path::new("/"), "overwrite an object", e))
    }

    /// The whole object `name`: for tests that look at what is stored.
    #[doc(hidden)]
    pub fn read_for_tests(&self, name: &str) -> FsResult<Vec<u8>> {
        self.run(self.op.read(name))
            .map(|b| b.to_vec())
            .map_err(|e| self.error(Path::new("/"), "read an object", e))
    }

    /// The names of every object under `dir`: for tests that scan what is
    /// stored.
    #[doc(hidden)]
    pub fn list_for_tests(&self, dir: &str) -> FsResult<Vec<String>> {
        Ok(self.list(dir)?.into_iter().map(|o| o.name).collect())
    }

    /// Waits for `future` on the store's runtime.
    fn run<T>(&self, future: impl IntoFuture<Output = T>) -> T {
        self.runtime.block_on(future.into_future())
    }

    /// An OpenDAL error as an [`FsError`] about `path`: unreachable (the
    /// network, a timeout, the store's own 5xx) as [`Unavailable`], the
    /// rest as a backend error. Only the kind and the store's endpoint are
    /// shown: OpenDAL's message can carry request details.
    fn error(&self, path: &Path, op: &'static str, err: opendal::Error) -> FsError {
        // Temporary: a network failure, a timeout, the store's own 5xx or
        // 429; persistent: one of those, still there after the retries.
        if err.is_temporary() || err.is_persistent() {
            return Unavailable::new(Service::ObjectStore, &self.endpoint, transport_reason(&err))
                .into_fs_error(path, op);
        }
        match err.kind() {
            ErrorKind::PermissionDenied => FsError::backend(
                path,
                op,
                format!(
                    "the object store at {} refused the credentials",
                    self.endpoint
                ),
            ),
            kind => FsError::backend(
                path,
                op,
                format!("the object store at {} failed: {kind}", self.endpoint),
            ),
        }
    }
}

/// Why a request got no usable answer, without the request's details: the
/// kind of the I/O error underneath, if there is one.
fn transport_reason(err: &opendal::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut deepest = None;
    while let Some(s) = source {
        deepest = Some(s);
        source = s.source();
    }
    match deepest.and_then(|s| s.downcast_ref::<std::io::Error>()) {
        Some(io) => format!("{} ({})", io.kind(), err.kind()),
        None => format!("no answer or a server error ({})", err.kind()),
    }
}
