//! `POST /v1/exec`: run a command in the caller's workspace, sandboxed
//! (see [`crate::exec`]); off unless the service runs with `--allow-exec`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::Value;

use super::{ApiError, ApiResult, Shared, secret};
use crate::exec::{self, ExecRequest};

/// The largest body: the command line, the environment and its input.
pub(crate) const MAX_BODY: usize = exec::MAX_STDIN * 2 + (4 << 20);

/// Runs the command of the body; answers with its exit status, output and
/// time once it has ended.
pub(crate) async fn run(
    State(service): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let request = ExecRequest::from_json(&body)?;
    Ok(Json(
        exec::run(&service, secret(&headers), request, "http").await?,
    ))
}
