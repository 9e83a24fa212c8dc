//! `/v1/skills`: skill bundles (`.tar.gz` or `.zip`) unpacked under
//! `/skills/<name>/` of the account's workspace, whole or not at all.

use anyfs::{FsError, FsErrorKind};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiResult, Shared, secret};
use crate::bundle::{self, Entry};
use crate::failure::Failure;
use crate::operation::{Access, Callers, FileRequest, OpenWorkspace, Target, run_audited};

/// Unpacks a `.tar.gz` or `.zip` under `/skills/<name>/`, replacing what
/// was there; a bundle with any entry that would land elsewhere is refused
/// whole, before anything is written. The account's own secret only.
pub(super) async fn install(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let target = format!("/skills/{name}");
    let request = FileRequest {
        secret: secret(&headers),
        target: Target::Own,
        callers: Callers::AccountOnly,
        access: Access::InSteps,
        audits: vec![("install skill".into(), target.clone())],
    };
    let skill = name.clone();
    let (files, bytes) = run_audited(&service, request, move |fs| {
        let refused = |e: bundle::Refused| Failure::BundleRefused(e.0);
        bundle::check_name(&skill).map_err(refused)?;
        // Read and judged whole before anything is written.
        let entries = bundle::read(&body).map_err(refused)?;
        Ok::<_, Failure>(unpack(fs, &entries, &target)?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"skill": name, "files": files, "bytes": bytes})),
    ))
}

/// Writes `entries` into a staging folder, then puts it in `target`'s
/// place; on any error the staging folder is removed and `target` is as it
/// was. How many files and bytes were written.
fn unpack(fs: &OpenWorkspace, entries: &[Entry], target: &str) -> Result<(usize, u64), FsError> {
    let staging = format!("/skills/.staging-{}", uuid::Uuid::new_v4().simple());
    let write_staging = || -> Result<(usize, u64), FsError> {
        let _shared = fs.share_tree();
        fs.create_dir_all(&staging)?;
        let (mut files, mut bytes) = (0, 0u64);
        for entry in entries {
            match entry {
                Entry::Dir(p) => fs.create_dir_all(format!("{staging}/{p}"))?,
                Entry::File(p, data) => {
                    let path = format!("{staging}/{p}");
                    if let Some((parent, _)) =
                        anyfs::path::split_parent(std::path::Path::new(&path))
                    {
                        fs.create_dir_all(&parent)?;
                    }
                    fs.write(&path, data)?;
                    files += 1;
                    bytes += data.len() as u64;
                }
            }
        }
        Ok((files, bytes))
    };
    let result = write_staging().and_then(|counts| {
        let _alone = fs.own_tree();
        if fs.exists(target)? {
            fs.remove_dir_all(target)?;
        }
        fs.rename(&staging, target)?;
        Ok(counts)
    });
    if result.is_err() {
        let _alone = fs.own_tree();
        let _ = fs.remove_dir_all(&staging);
    }
    result
}

/// `GET /v1/skills`: the names of the skills installed under `/skills`
/// (an empty list when there are none).
pub(super) async fn list(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let request = FileRequest {
        secret: secret(&headers),
        target: Target::Own,
        callers: Callers::AccountOrAgent,
        access: Access::Read,
        audits: vec![("list skills".into(), "/skills".into())],
    };
    let names = run_audited(&service, request, |fs| {
        let entries = match fs.read_dir("/skills") {
            Ok(entries) => entries,
            Err(e) if e.kind() == FsErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.name.to_string_lossy().into_owned();
            // An install in progress is not a skill yet.
            if entry.file_type == anyfs::FileType::Directory && !name.starts_with(".staging-") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    })
    .await?;
    Ok(Json(json!({ "skills": names })))
}
