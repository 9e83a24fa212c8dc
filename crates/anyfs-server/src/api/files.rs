//! `/v1/files` and `/v1/fs`: the caller's workspace — listings, reads
//! (ranges and large files streamed), uploads (streamed, replacing the file
//! whole or not at all), deletes, stat, mkdir, move and copy. Each runs
//! through [`run_audited`].

use std::io::{Read, Write};

use anyfs::{FileStorage, FsError};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Shared, secret};
use crate::operation::{Access, Callers, FileRequest, OpenWorkspace, Target, run_audited};
use crate::workspace::{HeavyPermit, Stack};

/// Runs a file operation for the sender of `headers` on its own tree,
/// with the audit records `audits`.
async fn file_op<T: Send + 'static>(
    service: &Shared,
    headers: &HeaderMap,
    access: Access,
    audits: Vec<(String, String)>,
    op: impl FnOnce(&OpenWorkspace) -> Result<T, FsError> + Send + 'static,
) -> ApiResult<T> {
    file_op_in(service, headers, Target::Own, access, audits, op).await
}

/// [`file_op`] on tree `target` of the caller's account.
pub(super) async fn file_op_in<T: Send + 'static>(
    service: &Shared,
    headers: &HeaderMap,
    target: Target,
    access: Access,
    audits: Vec<(String, String)>,
    op: impl FnOnce(&OpenWorkspace) -> Result<T, FsError> + Send + 'static,
) -> ApiResult<T> {
    let request = FileRequest {
        secret: secret(headers),
        target,
        callers: Callers::AccountOrAgent,
        access,
        audits,
    };
    Ok(run_audited(service, request, op).await?)
}

/// The audit records of `action` on `path` of tree `target`: the tree is
/// named in the action (`read in snapshot 3`).
fn audit_in(target: Target, action: &str, path: &str) -> Vec<(String, String)> {
    let action = match target {
        Target::Own => action.to_string(),
        Target::Snapshot(id) => format!("{action} in snapshot {id}"),
        Target::Branch(id) => format!("{action} in branch {id}"),
    };
    vec![(action, path.to_string())]
}

/// One audit record: `action` on `path`.
fn audit(action: &str, path: &str) -> Vec<(String, String)> {
    vec![(action.to_string(), path.to_string())]
}

fn vpath(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

fn listing(fs: &FileStorage<Stack>, path: &str) -> Result<Value, FsError> {
    let mut entries = Vec::new();
    for entry in fs.read_dir(path)? {
        let entry = entry?;
        entries.push(json!({
            "name": entry.name.to_string_lossy(),
            "type": match entry.file_type {
                anyfs::FileType::File => "file",
                anyfs::FileType::Directory => "dir",
                anyfs::FileType::Symlink => "symlink",
            },
        }));
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json!({"path": path, "entries": entries}))
}

pub(super) async fn list_root(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    list_root_in(&service, &headers, Target::Own).await
}

/// The root listing of tree `target`.
pub(super) async fn list_root_in(
    service: &Shared,
    headers: &HeaderMap,
    target: Target,
) -> ApiResult<Json<Value>> {
    let audits = audit_in(target, "list", "/");
    let value = file_op_in(service, headers, target, Access::Read, audits, |fs| {
        listing(fs, "/")
    })
    .await?;
    Ok(Json(value))
}

/// `bytes=a-b`, `bytes=a-`, or `bytes=-n` of a file of `len` bytes.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && start < len).then_some((start, end))
}

pub(super) async fn read(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> ApiResult<Response> {
    read_in(&service, &headers, Target::Own, &path).await
}

/// A file (whole, a range, or streamed) or a directory's listing, of tree
/// `target`.
pub(super) async fn read_in(
    service: &Shared,
    headers: &HeaderMap,
    target: Target,
    path: &str,
) -> ApiResult<Response> {
    let path = vpath(path);
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    enum Got {
        Dir(Value),
        Small(Vec<u8>),
        Part(Vec<u8>, u64, u64, u64),
        /// A stream of `len` bytes (`Some((start, end, file_len))` for a
        /// range), with the workspace it reads and its permit, both kept
        /// until the stream ends (a workspace nobody holds may be closed).
        Stream {
            first: Bytes,
            reader: Box<dyn Read + Send>,
            len: u64,
            range: Option<(u64, u64, u64)>,
            keep: (FileStorage<Stack>, HeavyPermit),
        },
        BadRange(u64),
    }
    let audits = audit_in(target, "read", &path);
    let got = file_op_in(service, headers, target, Access::Read, audits, move |fs| {
        let path = path.as_str();
        let meta = fs.metadata(path)?;
        if meta.is_dir() {
            return Ok(Got::Dir(listing(fs, path)?));
        }
        let ranged = range.is_some();
        let (start, end) = match range {
            Some(r) => match parse_range(&r, meta.len) {
                Some(span) => span,
                None => return Ok(Got::BadRange(meta.len)),
            },
            // Read with a bound: the file may have grown since `metadata`.
            None if meta.len <= IN_ONE_PIECE => {
                // One byte more than measured tells a file that grew (a
                // bound of the file's own size: no large buffer per read).
                let bytes = fs.read_range(path, 0, meta.len as usize + 1)?;
                if bytes.len() as u64 <= meta.len {
                    return Ok(Got::Small(bytes));
                }
                let len = fs.metadata(path)?.len;
                (0, len.max(1) - 1)
            }
            None => (0, meta.len - 1),
        };
        let len = end - start + 1;
        if ranged && len <= IN_ONE_PIECE {
            let bytes = fs.read_range(path, start, len as usize)?;
            return Ok(Got::Part(bytes, start, end, meta.len));
        }
        let permit = fs.heavy(path)?;
        // One stream, so the bytes come from one version of the file even
        // if it is replaced meanwhile; what comes before the range is
        // read and dropped.
        let mut reader = fs.open_read(path)?;
        std::io::copy(&mut (&mut reader).take(start), &mut std::io::sink())
            .map_err(|e| FsError::from_io(path, "read", e))?;
        // The first piece is read before the answer's status is chosen: a
        // store that cannot be reached now is a 503 the client may retry,
        // not a 200 whose body breaks off.
        let mut reader = reader.take(len);
        let mut first = vec![0u8; STREAM_PIECE];
        let n = reader
            .read(&mut first)
            .map_err(|e| FsError::from_io(path, "read", e))?;
        first.truncate(n);
        Ok(Got::Stream {
            first: Bytes::from(first),
            reader: Box::new(reader),
            len,
            range: ranged.then_some((start, end, meta.len)),
            keep: (fs.files(), permit),
        })
    })
    .await?;
    Ok(match got {
        Got::Dir(v) => Json(v).into_response(),
        Got::Small(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Got::Part(bytes, start, end, len) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
                (header::CONTENT_TYPE, "application/octet-stream".into()),
            ],
            bytes,
        )
            .into_response(),
        Got::BadRange(len) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response(),
        Got::Stream {
            first,
            reader,
            len,
            range,
            keep,
        } => {
            // Streamed: a piece at a time from a blocking reader.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            tokio::task::spawn_blocking(move || {
                let _keep = keep;
                let mut reader = reader;
                if tx.blocking_send(Ok(first)).is_err() {
                    return;
                }
                let mut buf = vec![0u8; STREAM_PIECE];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx
                                .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                                .is_err()
                            {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            let mut response = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len);
            if let Some((start, end, file_len)) = range {
                response = response.status(StatusCode::PARTIAL_CONTENT).header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{file_len}"),
                );
            }
            response
                .body(Body::from_stream(stream))
                .map_err(ApiError::internal)?
        }
    })
}

/// How much of a streamed read is sent at a time.
const STREAM_PIECE: usize = 64 * 1024;

/// Files, ranges and uploads larger than this are streamed transfers:
/// never held whole, and counted against `MAX_HEAVY_PER_ACCOUNT`.
const IN_ONE_PIECE: u64 = 256 * 1024;

/// How long an upload that declares at most `IN_ONE_PIECE` bytes may take.
const SMALL_UPLOAD_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// How long any upload may go without sending a byte.
const UPLOAD_IDLE_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// How much of a refused upload is still read (and dropped), so that the
/// client hears the JSON error instead of a reset connection.
const DRAIN_AFTER_REFUSAL: u64 = 64 << 20;

/// Replaces (or creates) a file with the request body, streamed in
/// constant memory. The new content takes the file's place only once the
/// whole body is in and stored: a cut-off, refused or failed upload leaves
/// the old content (or no file), and so does a crash.
pub(super) async fn write(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
    body: Body,
) -> ApiResult<Response> {
    write_in(&service, &headers, Target::Own, &path, body).await
}

/// [`write`] to tree `target`.
pub(super) async fn write_in(
    service: &Shared,
    headers: &HeaderMap,
    target: Target,
    path: &str,
    body: Body,
) -> ApiResult<Response> {
    use futures_util::StreamExt;
    let path = vpath(path);
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // The body flows to a blocking writer through a small channel: a large
    // upload never sits in memory whole. `None` says the body broke off.
    // The writer waits on its thread of the blocking pool; the feed waits
    // here, without a hop to that pool per chunk (which would queue every
    // other request's work behind a large upload's).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(4);
    let audits = audit_in(target, "write", &path);
    let writer = file_op_in(
        service,
        headers,
        target,
        Access::InSteps,
        audits,
        move |fs| {
            let path = path.as_str();
            // Like an object store: the folders a file goes into are made.
            if let Some((parent, _)) = anyfs::path::split_parent(std::path::Path::new(path)) {
                let _shared = fs.share_tree();
                fs.create_dir_all(&parent).map_err(|e| e.with_path(path))?;
            }
            let cut_off = |why: &str| {
                FsError::io(
                    path,
                    "receive the upload",
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why.to_string()),
                )
            };
            // An upload that may be large, or says nothing of its length,
            // counts as a streamed transfer (see `MAX_HEAVY_PER_ACCOUNT`) from
            // the start: it holds a blocking thread while its client sends.
            // One that declares a small length does not, and must arrive
            // within `SMALL_UPLOAD_TIME`.
            let mut permit = match declared {
                Some(n) if n <= IN_ONE_PIECE => None,
                _ => Some(fs.heavy(path)?),
            };
            let mut out = {
                let _shared = fs.share_tree();
                fs.open_write(path)?
            };
            let mut written = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                let Some(chunk) = chunk else {
                    return Err(cut_off("the upload broke off before its end"));
                };
                out.write_all(&chunk)
                    .map_err(|e| FsError::from_io(path, "write", e))?;
                written += chunk.len() as u64;
                if permit.is_none() && written > IN_ONE_PIECE {
                    permit = Some(fs.heavy(path)?);
                }
            }
            drop(permit);
            if declared.is_some_and(|n| n != written) {
                return Err(cut_off("the upload ended before the length it declared"));
            }
            // Only now does the new content replace the old.
            let _shared = fs.share_tree();
            out.commit()?;
            Ok(written)
        },
    );
    let feed = async move {
        let mut stream = body.into_data_stream();
        let mut drained = 0u64;
        let mut refused = false;
        // A client that stops sending is cut off: a small upload must be
        // in within its time, any upload must keep moving.
        let small = declared.is_some_and(|n| n <= IN_ONE_PIECE);
        let deadline = tokio::time::Instant::now() + SMALL_UPLOAD_TIME;
        loop {
            let wait = if small {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                UPLOAD_IDLE_TIME
            };
            let next = match tokio::time::timeout(wait, stream.next()).await {
                Ok(Some(next)) => Ok(next),
                Ok(None) => break,
                Err(_) => Err(()),
            };
            let chunk = match next.and_then(|c| c.map_err(drop)) {
                Ok(chunk) => chunk,
                Err(()) => {
                    let _ = tx.send(None).await;
                    break;
                }
            };
            if refused {
                // The writer refused: read on (bounded) so the client
                // gets the answer, not a reset.
                drained += chunk.len() as u64;
                if drained > DRAIN_AFTER_REFUSAL {
                    break;
                }
                continue;
            }
            refused = tx.send(Some(chunk)).await.is_err();
        }
        drop(tx);
    };
    let (written, ()) = tokio::join!(writer, feed);
    let written = written?;
    Ok((StatusCode::CREATED, Json(json!({"written": written}))).into_response())
}

#[derive(Deserialize)]
pub(super) struct DeleteQuery {
    #[serde(default)]
    pub(super) recursive: bool,
}

pub(super) async fn delete(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    delete_in(&service, &headers, Target::Own, &path, q).await
}

/// [`delete`] in tree `target`.
pub(super) async fn delete_in(
    service: &Shared,
    headers: &HeaderMap,
    target: Target,
    path: &str,
    q: DeleteQuery,
) -> ApiResult<StatusCode> {
    let path = vpath(path);
    let audits = audit_in(target, "delete", &path);
    file_op_in(
        service,
        headers,
        target,
        Access::WholeTree,
        audits,
        move |fs| {
            let meta = fs.symlink_metadata(&path)?;
            crate::mcp::remove_node(fs, &path, meta.is_dir(), q.recursive)
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct PathQuery {
    path: String,
}

pub(super) async fn stat(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Value>> {
    let path = vpath(&q.path);
    let audits = audit("stat", &path);
    let value = file_op(&service, &headers, Access::Read, audits, move |fs| {
        let m = fs.metadata(&path)?;
        Ok(json!({
            "path": path,
            "type": if m.is_dir() { "dir" } else if m.is_symlink() { "symlink" } else { "file" },
            "size": m.len,
            "mode": format!("{:o}", m.permissions.mode()),
            "modified": m.modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        }))
    })
    .await?;
    Ok(Json(value))
}

pub(super) async fn mkdir(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<PathQuery>,
) -> ApiResult<StatusCode> {
    let path = vpath(&q.path);
    let audits = audit("mkdir", &path);
    file_op(&service, &headers, Access::Change, audits, move |fs| {
        fs.create_dir_all(&path)
    })
    .await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
pub(super) struct FromTo {
    from: String,
    to: String,
}

/// A two-path operation (`move`, `copy`) on the caller's workspace: both
/// paths are audited (`move` records the source, `move to` the
/// destination).
async fn from_to(
    service: &Shared,
    headers: &HeaderMap,
    action: &'static str,
    q: FromTo,
    op: fn(&FileStorage<Stack>, &str, &str) -> Result<(), FsError>,
) -> ApiResult<StatusCode> {
    let (from, to) = (vpath(&q.from), vpath(&q.to));
    let audits = vec![
        (action.to_string(), from.clone()),
        (format!("{action} to"), to.clone()),
    ];
    file_op(service, headers, Access::WholeTree, audits, move |fs| {
        op(fs, &from, &to)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn move_node(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<FromTo>,
) -> ApiResult<StatusCode> {
    from_to(&service, &headers, "move", q, |fs, from, to| {
        fs.rename(from, to)
    })
    .await
}

pub(super) async fn copy_node(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<FromTo>,
) -> ApiResult<StatusCode> {
    from_to(&service, &headers, "copy", q, |fs, from, to| {
        fs.copy(from, to)
    })
    .await
}
