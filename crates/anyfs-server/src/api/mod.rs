//! The HTTP API: the router, the middleware every response goes through,
//! and one module per resource. Handlers are thin: they parse the request,
//! do their work on the blocking pool (the registry and the workspaces
//! block), and render the answer; who the caller is and how a file
//! operation is run and audited live in the service core ([`crate::caller`],
//! [`crate::operation`]), shared with every other transport.

mod accounts;
mod agents;
mod audit;
mod errors;
mod exec;
mod executions;
mod files;
mod skills;
mod trees;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Service;
use crate::caller::{self, Caller};
use crate::failure::Failure;
use crate::registry::Account;

pub(crate) use errors::{ApiError, ApiResult};
pub(crate) use trees::{Most, room_for};

type Shared = Arc<Service>;

/// The bearer secret of a request, wiped when dropped.
fn secret(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    caller::bearer(value).map(|s| Zeroizing::new(s.to_string()))
}

/// Who sent `headers` (call on the blocking pool).
fn authenticate(service: &Service, headers: &HeaderMap) -> ApiResult<Caller> {
    let secret = secret(headers);
    Ok(caller::authenticate(
        service,
        secret.as_deref().map(String::as_str),
    )?)
}

/// The account secret's caller; agent tokens and the admin cannot manage
/// accounts or agents.
fn account_only(service: &Service, headers: &HeaderMap) -> ApiResult<Account> {
    let caller = authenticate(service, headers)?;
    Ok(caller::account_owner(service, caller)?)
}

/// The admin's caller; anyone else is refused.
fn admin_only(service: &Service, headers: &HeaderMap) -> ApiResult<()> {
    match authenticate(service, headers)? {
        Caller::Admin => Ok(()),
        _ => Err(ApiError::forbidden("admin only")),
    }
}

/// Refuses the request while audit records cannot be written: an
/// operation that would leave no record is not done. (An atomic flag: fine
/// on the async threads.)
fn audit_ready(service: &Service) -> ApiResult<()> {
    service
        .registry
        .audit_ready()
        .map_err(|e| Failure::audit_unavailable(e, false).into())
}

/// Refuses an account or agent name that is empty or too long.
fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request(
            "a name of 1 to 200 characters is required",
        ));
    }
    Ok(())
}

/// Runs a handler's work on the blocking pool.
async fn blocking<T: Send + 'static>(
    service: &Shared,
    work: impl FnOnce(&Shared) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    crate::operation::blocking(service, work).await
}

/// The whole API.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/accounts", post(accounts::signup))
        .route(
            "/v1/accounts/me",
            get(accounts::me)
                .patch(accounts::patch_me)
                .delete(accounts::delete_me),
        )
        .route(
            "/v1/accounts/me/rotate-secret",
            post(accounts::rotate_secret),
        )
        .route("/v1/admin/accounts", get(accounts::admin_list))
        .route(
            "/v1/admin/accounts/{id}",
            get(accounts::admin_get).delete(accounts::admin_delete),
        )
        .route(
            "/v1/admin/accounts/{id}/suspend",
            post(accounts::admin_suspend),
        )
        .route(
            "/v1/admin/accounts/{id}/unsuspend",
            post(accounts::admin_unsuspend),
        )
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route(
            "/v1/agents/{id}",
            get(agents::get).patch(agents::patch).delete(agents::delete),
        )
        .route("/v1/agents/{id}/rotate-token", post(agents::rotate_token))
        .route("/v1/files", get(files::list_root))
        .route("/v1/files/", get(files::list_root))
        .route(
            "/v1/files/{*path}",
            get(files::read).put(files::write).delete(files::delete),
        )
        .route("/v1/fs/stat", get(files::stat))
        .route("/v1/fs/mkdir", post(files::mkdir))
        .route("/v1/fs/move", post(files::move_node))
        .route("/v1/fs/copy", post(files::copy_node))
        .route(
            "/v1/executions",
            post(executions::create).get(executions::list),
        )
        .route(
            "/v1/executions/{id}",
            get(executions::get)
                .patch(executions::patch)
                .delete(executions::delete),
        )
        .route(
            "/v1/skills/{name}",
            axum::routing::put(skills::install).layer(axum::extract::DefaultBodyLimit::max(
                crate::bundle::MAX_BYTES as usize,
            )),
        )
        .route(
            "/v1/snapshots",
            post(trees::create_snapshot).get(trees::list_snapshots),
        )
        .route(
            "/v1/snapshots/{id}",
            axum::routing::delete(trees::delete_snapshot),
        )
        .route("/v1/snapshots/{id}/restore", post(trees::restore_snapshot))
        .route("/v1/snapshots/{id}/files", get(trees::snapshot_root))
        .route("/v1/snapshots/{id}/files/", get(trees::snapshot_root))
        .route(
            "/v1/snapshots/{id}/files/{*path}",
            get(trees::snapshot_read),
        )
        .route(
            "/v1/branches",
            post(trees::create_branch).get(trees::list_branches),
        )
        .route(
            "/v1/branches/{id}",
            axum::routing::delete(trees::delete_branch),
        )
        .route("/v1/branches/{id}/merge", post(trees::merge))
        .route("/v1/branches/{id}/files", get(trees::branch_root))
        .route("/v1/branches/{id}/files/", get(trees::branch_root))
        .route(
            "/v1/branches/{id}/files/{*path}",
            get(trees::branch_read)
                .put(trees::branch_write)
                .delete(trees::branch_delete),
        )
        .route("/v1/diff", get(trees::diff))
        .route(
            "/v1/exec",
            post(exec::run).layer(axum::extract::DefaultBodyLimit::max(exec::MAX_BODY)),
        )
        .route("/v1/skills", get(skills::list))
        .route("/v1/audit", get(audit::page))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .nest_service("/mcp", crate::mcp::http_service(service.clone()))
        .fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            mcp_gate,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(service)
}

/// `/mcp` serves only a caller with a valid bearer secret, from the first
/// message on (`initialize`, the event stream, the session's end): no
/// session is made or kept for anyone else. Each tool call is still
/// authenticated again, by its own request's header, as it runs. A client
/// ending its session is told 204 No Content: the MCP library says 202
/// Accepted, which clients read as the session not ended.
async fn mcp_gate(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path != "/mcp" && !path.starts_with("/mcp/") {
        return next.run(request).await;
    }
    let presented = secret(request.headers());
    let checked = crate::operation::blocking(&service, move |service| {
        caller::authenticate(service, presented.as_deref().map(String::as_str)).map(drop)
    })
    .await;
    if let Err(failure) = checked {
        let mut response = errors::ApiError::from(failure).into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        return response;
    }
    let ending = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if ending && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// What answers a path no route matches: the JSON error, not an empty 404.
async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such route: see /openapi.json",
    )
}

/// Whether the service can do its work: 200 `{"status": "ok"}`, or 503
/// while audit records cannot be written (nothing is done then). No secret
/// needed, for load balancers and supervisors.
async fn healthz(State(service): State<Shared>) -> Response {
    // An atomic flag: answered on the async thread.
    match service.registry.audit_ready() {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

/// The largest body of a plain-text error that is turned into JSON.
const REWRITTEN_ERROR_MAX: usize = 16 * 1024;

/// Gives every error the documented JSON form `{"error": {"kind",
/// "message", "path"}}`, including those made before a handler runs: the
/// plain-text rejections of axum's extractors (a body that is not JSON or
/// not the expected shape, a bad query string, a body over the limit, a
/// wrong content type) and the router's 405. Headers such as `Retry-After`,
/// `Allow` and `Content-Range` are kept. The MCP endpoint answers in its
/// own protocol and is left alone.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mcp = request.uri().path().starts_with("/mcp");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if mcp || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REWRITTEN_ERROR_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let kind = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::UNPROCESSABLE_ENTITY => "InvalidBody",
        StatusCode::RANGE_NOT_SATISFIABLE => "RangeNotSatisfiable",
        s if s.is_server_error() => "Internal",
        _ => "BadRequest",
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, kind, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The OpenAPI document of the routes above.
async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// One log line per request: method, route, status, time. Never a header,
/// a body, a query string (they may hold secrets) or the path asked for
/// (file names are the tenant's data): the route it matched, such as
/// `/v1/files/{*path}`.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => route.as_str().to_string(),
        None if request.uri().path().starts_with("/mcp") => "/mcp".to_string(),
        None => "(no route)".to_string(),
    };
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %path,
        status = response.status().as_u16(),
        micros = start.elapsed().as_micros() as u64,
        "request"
    );
    response
}
