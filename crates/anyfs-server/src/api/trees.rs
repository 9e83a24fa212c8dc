//! `/v1/snapshots`, `/v1/branches` and `/v1/diff`: mark a point of the
//! workspace, let an agent work (on a branch, or on the workspace), see
//! exactly what changed, and keep it, drop it, or take part of it.
//!
//! Every route takes the account's own secret (an agent token is refused
//! and audited), is audited, and reaches only the account's own trees:
//! another account's snapshot or branch id is 404.

use std::time::UNIX_EPOCH;

use anyfs::FsError;
use anyfs::snapshots::{
    BranchId, BranchInfo, Change, Conflict, MergeOptions, MergeOutcome, NodeState, SnapshotId,
    SnapshotInfo, Take, TreeRef,
};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::files::{self, DeleteQuery};
use super::{ApiError, ApiResult, Shared, check_name, secret};
use crate::operation::{Access, Callers, FileRequest, OpenWorkspace, Target, run_audited};

/// Runs `op` for the account whose secret sent `headers`, audited as
/// `action` on `path`.
async fn account_op<T: Send + 'static>(
    service: &Shared,
    headers: &HeaderMap,
    access: Access,
    (action, path): (&str, String),
    op: impl FnOnce(&OpenWorkspace) -> Result<T, FsError> + Send + 'static,
) -> ApiResult<T> {
    let request = FileRequest {
        secret: secret(headers),
        target: Target::Own,
        callers: Callers::AccountOnly,
        access,
        audits: vec![(action.to_string(), path)],
    };
    Ok(run_audited(service, request, op).await?)
}

fn seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn snapshot_json(s: &SnapshotInfo) -> Value {
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "created": seconds(s.created),
        "bytes": s.bytes,
    })
}

fn branch_json(b: &BranchInfo) -> Value {
    json!({
        "id": b.id.to_string(),
        "name": b.name,
        "base": b.base.to_string(),
        "created": seconds(b.created),
    })
}

fn node_json(n: &NodeState) -> Value {
    json!({
        "type": match n.file_type {
            anyfs::FileType::File => "file",
            anyfs::FileType::Directory => "dir",
            anyfs::FileType::Symlink => "symlink",
        },
        "size": n.len,
        "mode": format!("{:o}", n.permissions.mode()),
    })
}

/// One change as the API says it.
pub(crate) fn change_json(c: &Change) -> Value {
    let mut out = json!({
        "change": c.kind(),
        "path": c.path().display().to_string(),
    });
    if let Change::Renamed { from, .. } = c {
        out["from"] = json!(from.display().to_string());
    }
    if let Some(old) = c.old() {
        out["old"] = node_json(old);
    }
    if let Some(new) = c.new_state() {
        out["new"] = node_json(new);
    }
    out
}

/// Which of an account's limits a new tree counts against.
pub(crate) enum Most {
    Snapshots,
    Branches,
}

/// Refuses a new snapshot or branch past the account's number of them, or
/// once what it stores reaches its quota.
pub(crate) fn room_for(
    ws: &OpenWorkspace,
    count: impl FnOnce(&dyn crate::workspace::Trees) -> Result<usize, FsError>,
    most: Most,
) -> Result<(), FsError> {
    let config = &ws.service().config;
    let (most, what) = match most {
        Most::Snapshots => (config.max_snapshots, "snapshots"),
        Most::Branches => (config.max_branches, "branches"),
    };
    ws.service()
        .workspaces
        .check_room(ws.account(), count, most, what)
}

/// Where a snapshot or branch is named in the audit log.
fn snapshot_path(id: SnapshotId) -> String {
    format!("/.snapshot/{id}")
}

fn branch_path(id: BranchId) -> String {
    format!("/.branch/{id}")
}

/// An id from the URL; one that cannot be an id is no resource.
fn snapshot_id(raw: &str) -> ApiResult<SnapshotId> {
    raw.parse().map_err(|_| ApiError::not_found())
}

fn branch_id(raw: &str) -> ApiResult<BranchId> {
    raw.parse().map_err(|_| ApiError::not_found())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSnapshot {
    #[serde(default)]
    name: String,
}

pub(super) async fn create_snapshot(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<NewSnapshot>,
) -> ApiResult<Response> {
    if q.name.len() > 200 {
        return Err(ApiError::bad_request(
            "a snapshot name has at most 200 characters",
        ));
    }
    let audit = ("snapshot", "/".to_string());
    let info = account_op(&service, &headers, Access::Change, audit, move |ws| {
        room_for(ws, |t| Ok(t.snapshots()?.len()), Most::Snapshots)?;
        ws.with_trees(|trees| trees.create_snapshot(&q.name))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(snapshot_json(&info))).into_response())
}

pub(super) async fn list_snapshots(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let audit = ("list snapshots", "/".to_string());
    let list = account_op(&service, &headers, Access::Read, audit, |ws| {
        ws.with_trees(|trees| trees.snapshots())
    })
    .await?;
    Ok(Json(
        json!({"snapshots": list.iter().map(snapshot_json).collect::<Vec<_>>()}),
    ))
}

pub(super) async fn delete_snapshot(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let id = snapshot_id(&id)?;
    let audit = ("delete snapshot", snapshot_path(id));
    account_op(&service, &headers, Access::Change, audit, move |ws| {
        ws.with_trees(|trees| trees.delete_snapshot(id))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes the workspace what the snapshot holds, alone in the account (no
/// other change of it runs meanwhile).
pub(super) async fn restore_snapshot(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let id = snapshot_id(&id)?;
    let audit = ("restore", snapshot_path(id));
    account_op(&service, &headers, Access::WholeTree, audit, move |ws| {
        ws.with_trees(|trees| trees.restore(id))
    })
    .await?;
    Ok(Json(json!({"restored": id.to_string()})))
}

pub(super) async fn snapshot_root(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let target = Target::Snapshot(snapshot_id(&id)?);
    files::list_root_in(&service, &headers, target).await
}

pub(super) async fn snapshot_read(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, path)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    let target = Target::Snapshot(snapshot_id(&id)?);
    files::read_in(&service, &headers, target, &path).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBranch {
    snapshot: String,
    name: String,
}

pub(super) async fn create_branch(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<NewBranch>,
) -> ApiResult<Response> {
    check_name(&q.name)?;
    let from = snapshot_id(&q.snapshot)?;
    let audit = ("branch", snapshot_path(from));
    let info = account_op(&service, &headers, Access::Change, audit, move |ws| {
        room_for(ws, |t| Ok(t.branches()?.len()), Most::Branches)?;
        ws.with_trees(|trees| trees.branch(from, &q.name))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(branch_json(&info))).into_response())
}

pub(super) async fn list_branches(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let audit = ("list branches", "/".to_string());
    let list = account_op(&service, &headers, Access::Read, audit, |ws| {
        ws.with_trees(|trees| trees.branches())
    })
    .await?;
    Ok(Json(
        json!({"branches": list.iter().map(branch_json).collect::<Vec<_>>()}),
    ))
}

pub(super) async fn delete_branch(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let id = branch_id(&id)?;
    let audit = ("delete branch", branch_path(id));
    account_op(&service, &headers, Access::Change, audit, move |ws| {
        ws.service().workspaces.delete_branch(ws.account(), id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn branch_root(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let target = Target::Branch(branch_id(&id)?);
    files::list_root_in(&service, &headers, target).await
}

pub(super) async fn branch_read(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, path)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    let target = Target::Branch(branch_id(&id)?);
    files::read_in(&service, &headers, target, &path).await
}

pub(super) async fn branch_write(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, path)): UrlPath<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let target = Target::Branch(branch_id(&id)?);
    files::write_in(&service, &headers, target, &path, body).await
}

pub(super) async fn branch_delete(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, path)): UrlPath<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let target = Target::Branch(branch_id(&id)?);
    files::delete_in(&service, &headers, target, &path, q).await
}

/// A tree as the API names it: `live`, `snapshot:ID` or `branch:ID`.
fn tree_ref(raw: &str) -> ApiResult<TreeRef> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("a tree is `live`, `snapshot:ID` or `branch:ID`"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    from: String,
    #[serde(default = "live")]
    to: String,
}

fn live() -> String {
    "live".to_string()
}

/// How long a diff waits for its client to take the next line.
const DIFF_IDLE_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// The changes from one tree to another, one JSON object per line,
/// streamed as they are found: a diff of any size is never held whole.
pub(super) async fn diff(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Response> {
    let (from, to) = (tree_ref(&q.from)?, tree_ref(&q.to)?);
    let (lines, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let (started, mut first) = tokio::sync::oneshot::channel::<()>();
    let audit = ("diff", format!("/{from}..{to}"));
    let service = service.clone();
    let mut work = tokio::spawn(async move {
        account_op(&service, &headers, Access::Read, audit, move |ws| {
            // A diff holds a thread while its client reads: counted with the
            // account's other streamed transfers.
            let _permit = ws.heavy("/")?;
            let runtime = tokio::runtime::Handle::current();
            let mut started = Some(started);
            let walked = ws.with_trees(|trees| {
                trees.diff(from, to, &mut |change| {
                    if let Some(started) = started.take() {
                        let _ = started.send(());
                    }
                    let mut line = change_json(&change).to_string().into_bytes();
                    line.push(b'\n');
                    // A client that went away, or stopped reading, ends the
                    // walk.
                    let sent =
                        runtime.block_on(lines.send_timeout(Ok(Bytes::from(line)), DIFF_IDLE_TIME));
                    Ok(sent.is_ok())
                })
            });
            if let Err(e) = &walked
                && started.is_none()
            {
                // Under way: the body breaks off, so that no client takes
                // part of a diff for all of it.
                let _ = lines.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            walked
        })
        .await
    });
    // The answer's status waits for the first change, or for the end: an
    // unknown tree is a 404, not a 200 that breaks off.
    tokio::select! {
        started = &mut first => {
            // Dropped unsent: the work ended before any change; its
            // outcome (a refusal, or an empty diff) decides the answer.
            if started.is_err() {
                work.await.map_err(ApiError::internal)??;
            }
        }
        done = &mut work => {
            done.map_err(ApiError::internal)??;
        }
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MergeRequest {
    /// The tree merged into (`live`, or `branch:ID`).
    #[serde(default = "live")]
    into: String,
    /// The side every conflict takes (`branch` or `into`); none: conflicts
    /// are reported and nothing is applied.
    #[serde(default)]
    take: Option<Side>,
    /// The side particular conflicting paths take.
    #[serde(default)]
    paths: std::collections::BTreeMap<String, Side>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum Side {
    Branch,
    Into,
}

impl From<Side> for Take {
    fn from(side: Side) -> Take {
        match side {
            Side::Branch => Take::Branch,
            Side::Into => Take::Into,
        }
    }
}

fn conflict_json(c: &Conflict) -> Value {
    json!({
        "path": c.path.display().to_string(),
        "branch": change_json(&c.branch),
        "into": change_json(&c.into),
    })
}

/// Applies what the branch changed since its base; 409 with every
/// conflicting path, and nothing applied, unless a side is chosen.
pub(super) async fn merge(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(q): Json<MergeRequest>,
) -> ApiResult<Response> {
    let id = branch_id(&id)?;
    let into = tree_ref(&q.into)?;
    if into != TreeRef::Live {
        return Err(ApiError::bad_request(
            "a branch merges into the workspace (`\"into\": \"live\"`)",
        ));
    }
    let mut options = MergeOptions::taking(q.take.map_or(Take::Neither, Take::from));
    for (path, side) in q.paths {
        let path = format!("/{}", path.trim_start_matches('/'));
        options.per_path.insert(path.into(), side.into());
    }
    let audit = ("merge", branch_path(id));
    let outcome = account_op(&service, &headers, Access::WholeTree, audit, move |ws| {
        ws.with_trees(|trees| trees.merge(id, into, &options))
    })
    .await?;
    Ok(match outcome {
        MergeOutcome::Applied { applied, kept } => {
            Json(json!({"applied": applied, "kept": kept})).into_response()
        }
        MergeOutcome::Conflicts(conflicts) => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": {
                    "kind": "Conflict",
                    "message": format!(
                        "{} path(s) changed on both sides; nothing was applied",
                        conflicts.len()
                    ),
                    "path": branch_path(id),
                },
                "conflicts": conflicts.iter().map(conflict_json).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
    })
}
