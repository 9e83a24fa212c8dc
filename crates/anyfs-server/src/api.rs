//! The HTTP API.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use anyfs::{FileStorage, FsError, FsErrorKind};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Service;
use crate::redact::{merge_patch, redact};
use crate::registry::{Account, AgentRow, now};
use crate::secrets::{self, Kind};
use crate::workspace::{AgentPolicy, Stack};

type Shared = Arc<Service>;

/// An error as the API reports it: `{"error": {"kind", "message", "path"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    path: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            path: None,
            retry_after: None,
        }
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "no such resource")
    }
    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid bearer secret is required",
        )
    }
    fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(%message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "internal error",
        )
    }
}

impl From<FsError> for ApiError {
    fn from(e: FsError) -> Self {
        let (status, kind) = match e.kind() {
            FsErrorKind::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            FsErrorKind::AccessDenied => (StatusCode::FORBIDDEN, "AccessDenied"),
            FsErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "PermissionDenied"),
            FsErrorKind::ReadOnly => (StatusCode::FORBIDDEN, "ReadOnly"),
            FsErrorKind::AlreadyExists => (StatusCode::CONFLICT, "AlreadyExists"),
            FsErrorKind::DirectoryNotEmpty => (StatusCode::CONFLICT, "DirectoryNotEmpty"),
            FsErrorKind::NotADirectory => (StatusCode::CONFLICT, "NotADirectory"),
            FsErrorKind::IsADirectory => (StatusCode::CONFLICT, "IsADirectory"),
            FsErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
            FsErrorKind::QuotaExceeded => (StatusCode::INSUFFICIENT_STORAGE, "QuotaExceeded"),
            FsErrorKind::FileSizeExceeded => (StatusCode::PAYLOAD_TOO_LARGE, "FileSizeExceeded"),
            FsErrorKind::RateLimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded"),
            FsErrorKind::InvalidPath => (StatusCode::BAD_REQUEST, "InvalidPath"),
            FsErrorKind::TooManySymlinks => (StatusCode::BAD_REQUEST, "TooManySymlinks"),
            FsErrorKind::IntegrityError => (StatusCode::INTERNAL_SERVER_ERROR, "IntegrityError"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Backend"),
        };
        let retry_after = e.retry_after().map(|wait| wait.as_secs().max(1));
        Self {
            status,
            kind,
            message: e.to_string(),
            path: Some(e.path().display().to_string()),
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"kind": self.kind, "message": self.message, "path": self.path}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Who is calling, from the bearer secret alone.
pub(crate) enum Caller {
    Account(Account),
    Agent {
        account: Account,
        agent: AgentRow,
        policy: AgentPolicy,
    },
    Admin,
}

impl Caller {
    fn account(&self) -> Option<&Account> {
        match self {
            Caller::Account(a) | Caller::Agent { account: a, .. } => Some(a),
            Caller::Admin => None,
        }
    }
    pub(crate) fn actor(&self) -> String {
        match self {
            Caller::Account(_) => "account".into(),
            Caller::Agent { agent, .. } => format!("agent:{}", agent.id),
            Caller::Admin => "admin".into(),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Who the bearer secret of these headers belongs to (for the MCP tools).
pub(crate) fn authenticate_caller(
    service: &Service,
    headers: &HeaderMap,
) -> Result<Caller, String> {
    authenticate(service, headers).map_err(|e| e.message)
}

/// The caller's workspace (for the MCP tools).
pub(crate) fn workspace_of(
    service: &Service,
    caller: &Caller,
) -> Result<(String, FileStorage<Stack>), String> {
    workspace(service, caller).map_err(|e| e.message)
}

fn authenticate(service: &Service, headers: &HeaderMap) -> ApiResult<Caller> {
    // Nothing is done that could not be audited.
    audit_ready(service)?;
    let refuse = |reason: &str| {
        let _ = service
            .registry
            .audit(None, "unknown", "authenticate", None, reason);
        ApiError::unauthorized()
    };
    let Some(secret) = bearer(headers) else {
        return Err(refuse("no secret"));
    };
    let digest = secrets::digest(secret);
    match Kind::of(secret) {
        Some(Kind::Admin) if secrets::matches(secret, &service.admin_digest) => Ok(Caller::Admin),
        Some(Kind::Account) => {
            let (account, stored) = service
                .registry
                .account_by_digest(&digest)
                .map_err(ApiError::internal)?
                .ok_or_else(|| refuse("unknown account secret"))?;
            if !secrets::matches(secret, &stored) {
                return Err(refuse("unknown account secret"));
            }
            if account.suspended {
                let _ = service.registry.audit(
                    Some(&account.id),
                    "account",
                    "authenticate",
                    None,
                    "suspended",
                );
                return Err(ApiError::forbidden("the account is suspended"));
            }
            Ok(Caller::Account(account))
        }
        Some(Kind::Agent) => {
            let (agent, stored) = service
                .registry
                .agent_by_digest(&digest)
                .map_err(ApiError::internal)?
                .ok_or_else(|| refuse("unknown agent token"))?;
            if !secrets::matches(secret, &stored) {
                return Err(refuse("unknown agent token"));
            }
            let account = service
                .registry
                .account(&agent.account_id)
                .map_err(ApiError::internal)?
                .ok_or_else(|| refuse("agent of a deleted account"))?;
            if account.suspended {
                let _ = service.registry.audit(
                    Some(&account.id),
                    "agent",
                    "authenticate",
                    None,
                    "suspended",
                );
                return Err(ApiError::forbidden("the account is suspended"));
            }
            // A policy that does not parse refuses the agent, never frees it.
            let policy = serde_json::from_str(&agent.policy).map_err(ApiError::internal)?;
            Ok(Caller::Agent {
                account,
                agent,
                policy,
            })
        }
        _ => Err(refuse("unrecognised secret")),
    }
}

/// Refuses the request while audit records cannot be written: an
/// operation that would leave no record is not done.
fn audit_ready(service: &Service) -> ApiResult<()> {
    service.registry.audit_ready().map_err(|e| {
        let mut refused = audit_unavailable(e);
        refused.message = "the audit log cannot be written at the moment; nothing was done".into();
        refused
    })
}

/// The 503 of an operation whose audit record could not be handed to a
/// working audit writer: it must not be reported as done.
pub(crate) fn audit_unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "the audit log cannot be written");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "AuditUnavailable",
        "the audit log cannot be written at the moment; the operation is not confirmed",
    )
}

/// The account secret's caller; agent tokens and the admin cannot manage
/// accounts or agents.
fn account_only(service: &Service, headers: &HeaderMap) -> ApiResult<Account> {
    match authenticate(service, headers)? {
        Caller::Account(a) => Ok(a),
        Caller::Agent { account, agent, .. } => {
            let _ = service.registry.audit(
                Some(&account.id),
                &format!("agent:{}", agent.id),
                "manage",
                None,
                "denied",
            );
            Err(ApiError::forbidden("agent tokens work files only"))
        }
        Caller::Admin => Err(ApiError::forbidden("use the admin routes")),
    }
}

fn admin_only(service: &Service, headers: &HeaderMap) -> ApiResult<()> {
    match authenticate(service, headers)? {
        Caller::Admin => Ok(()),
        _ => Err(ApiError::forbidden("admin only")),
    }
}

/// The whole API.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/accounts", post(signup))
        .route("/v1/accounts/me", get(me).patch(patch_me).delete(delete_me))
        .route("/v1/accounts/me/rotate-secret", post(rotate_secret))
        .route("/v1/admin/accounts", get(admin_list))
        .route(
            "/v1/admin/accounts/{id}",
            get(admin_get).delete(admin_delete),
        )
        .route("/v1/admin/accounts/{id}/suspend", post(admin_suspend))
        .route("/v1/admin/accounts/{id}/unsuspend", post(admin_unsuspend))
        .route("/v1/agents", post(create_agent).get(list_agents))
        .route(
            "/v1/agents/{id}",
            get(get_agent).patch(patch_agent).delete(delete_agent),
        )
        .route("/v1/agents/{id}/rotate-token", post(rotate_token))
        .route("/v1/files", get(list_root))
        .route("/v1/files/", get(list_root))
        .route(
            "/v1/files/{*path}",
            get(read_file).put(write_file).delete(delete_file),
        )
        .route("/v1/fs/stat", get(stat))
        .route("/v1/fs/mkdir", post(mkdir))
        .route("/v1/fs/move", post(move_node))
        .route("/v1/fs/copy", post(copy_node))
        .route(
            "/v1/executions",
            post(create_execution).get(list_executions),
        )
        .route(
            "/v1/executions/{id}",
            get(get_execution)
                .patch(patch_execution)
                .delete(delete_execution),
        )
        .route(
            "/v1/skills/{name}",
            axum::routing::put(install_skill).layer(axum::extract::DefaultBodyLimit::max(
                crate::bundle::MAX_BYTES as usize,
            )),
        )
        .route("/v1/skills", get(list_skills))
        .route("/v1/audit", get(audit))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .nest_service("/mcp", {
            let service = service.clone();
            rmcp::transport::streamable_http_server::StreamableHttpService::new(
                move || {
                    Ok(crate::mcp::McpFiles {
                        service: service.clone(),
                    })
                },
                std::sync::Arc::new(
                    rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
                ),
                Default::default(),
            )
        })
        .fallback(no_route)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(service)
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

// ------------------------------------------------------------------ accounts

#[derive(Deserialize)]
struct NewAccount {
    name: String,
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request(
            "a name of 1 to 200 characters is required",
        ));
    }
    Ok(())
}

async fn signup(
    State(service): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<NewAccount>,
) -> ApiResult<impl IntoResponse> {
    check_name(&body.name)?;
    audit_ready(&service)?;
    if let Err(wait) = service.signup_allowed(peer.ip()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            "too many sign-ups from this address",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let secret = secrets::generate(Kind::Account).map_err(ApiError::internal)?;
    let id = format!("acct_{}", uuid::Uuid::new_v4().simple());
    let account = service
        .registry
        .create_account(&id, &body.name, &secrets::digest(&secret))
        .map_err(ApiError::internal)?;
    let _ = service
        .registry
        .audit(Some(&id), "account", "create account", None, "ok");
    Ok((
        StatusCode::CREATED,
        Json(json!({"account": account, "secret": secret.as_str()})),
    ))
}

async fn me(State(service): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Account>> {
    Ok(Json(account_only(&service, &headers)?))
}

async fn patch_me(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<NewAccount>,
) -> ApiResult<Json<Account>> {
    let account = account_only(&service, &headers)?;
    check_name(&body.name)?;
    service
        .registry
        .rename_account(&account.id, &body.name)
        .map_err(ApiError::internal)?;
    let _ = service
        .registry
        .audit(Some(&account.id), "account", "rename account", None, "ok");
    let account = service
        .registry
        .account(&account.id)
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(account))
}

fn remove_account(service: &Service, id: &str, actor: &str) -> ApiResult<Value> {
    let (agents, executions) = service
        .registry
        .delete_account(id)
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)?;
    let workspace = service.workspaces.delete(id);
    let _ = service
        .registry
        .audit(Some(id), actor, "delete account", None, "ok");
    Ok(json!({"removed": {
        "account": id,
        "agents": agents,
        "executions": executions,
        "workspace": workspace,
        "keys": "derived from the master key and the account id: nothing of them is kept"
    }}))
}

async fn delete_me(State(service): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let account = account_only(&service, &headers)?;
    Ok(Json(remove_account(&service, &account.id, "account")?))
}

async fn rotate_secret(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let account = account_only(&service, &headers)?;
    let secret = secrets::generate(Kind::Account).map_err(ApiError::internal)?;
    service
        .registry
        .set_account_digest(&account.id, &secrets::digest(&secret))
        .map_err(ApiError::internal)?;
    let _ = service
        .registry
        .audit(Some(&account.id), "account", "rotate secret", None, "ok");
    Ok(Json(json!({"secret": secret.as_str()})))
}

async fn admin_list(State(service): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin_only(&service, &headers)?;
    let accounts = service.registry.accounts().map_err(ApiError::internal)?;
    Ok(Json(json!({
        "accounts": accounts,
        "open_workspaces": service.workspaces.open_count(),
    })))
}

async fn admin_get(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Account>> {
    admin_only(&service, &headers)?;
    let account = service.registry.account(&id).map_err(ApiError::internal)?;
    Ok(Json(account.ok_or_else(ApiError::not_found)?))
}

async fn admin_delete(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    admin_only(&service, &headers)?;
    Ok(Json(remove_account(&service, &id, "admin")?))
}

async fn set_suspended(
    service: &Service,
    headers: &HeaderMap,
    id: &str,
    suspended: bool,
) -> ApiResult<Json<Account>> {
    admin_only(service, headers)?;
    if !service
        .registry
        .set_suspended(id, suspended)
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found());
    }
    let action = if suspended {
        "suspend account"
    } else {
        "unsuspend account"
    };
    let _ = service
        .registry
        .audit(Some(id), "admin", action, None, "ok");
    let account = service.registry.account(id).map_err(ApiError::internal)?;
    Ok(Json(account.ok_or_else(ApiError::not_found)?))
}

async fn admin_suspend(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Account>> {
    set_suspended(&service, &headers, &id, true).await
}

async fn admin_unsuspend(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Account>> {
    set_suspended(&service, &headers, &id, false).await
}

// -------------------------------------------------------------------- agents

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAgent {
    name: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    policy: AgentPolicy,
}

fn agent_view(service: &Service, row: &AgentRow) -> ApiResult<Value> {
    let config = service
        .open_config(&row.account_id, &row.id, &row.sealed_config)
        .ok_or_else(|| ApiError::internal("an agent config does not decrypt"))?;
    let policy: AgentPolicy = serde_json::from_str(&row.policy).unwrap_or_default();
    Ok(json!({
        "id": row.id,
        "name": row.name,
        "config": redact(&config),
        "policy": policy,
        "created_at": row.created_at,
    }))
}

/// Refuses a policy whose globs do not compile, naming the first bad one:
/// accepted, it would break every request of the agent.
fn check_policy(policy: &AgentPolicy) -> ApiResult<()> {
    for (field, globs) in [("deny", &policy.deny), ("read_only", &policy.read_only)] {
        for glob in globs {
            anyfs::PathFilterLayer::builder()
                .deny(glob.clone())
                .build()
                .map_err(|e| {
                    let mut err = ApiError::bad_request(format!("policy.{field}: {e}"));
                    err.kind = "InvalidPolicy";
                    err
                })?;
        }
    }
    Ok(())
}

async fn create_agent(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<NewAgent>,
) -> ApiResult<impl IntoResponse> {
    let account = account_only(&service, &headers)?;
    check_name(&body.name)?;
    check_policy(&body.policy)?;
    let config = if body.config.is_null() {
        json!({})
    } else {
        body.config
    };
    if !config.is_object() {
        return Err(ApiError::bad_request("config must be a JSON object"));
    }
    let id = format!("agent_{}", uuid::Uuid::new_v4().simple());
    let token = secrets::generate(Kind::Agent).map_err(ApiError::internal)?;
    let row = AgentRow {
        sealed_config: service
            .seal_config(&account.id, &id, &config)
            .map_err(ApiError::internal)?,
        policy: serde_json::to_string(&body.policy).map_err(ApiError::internal)?,
        id: id.clone(),
        account_id: account.id.clone(),
        name: body.name,
        created_at: now(),
    };
    service
        .registry
        .create_agent(&row, &secrets::digest(&token))
        .map_err(ApiError::internal)?;
    let _ = service.registry.audit(
        Some(&account.id),
        "account",
        "create agent",
        Some(&id),
        "ok",
    );
    let mut view = agent_view(&service, &row)?;
    view["token"] = Value::String(token.to_string());
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_agents(State(service): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let account = account_only(&service, &headers)?;
    let rows = service
        .registry
        .agents(&account.id)
        .map_err(ApiError::internal)?;
    let agents = rows
        .iter()
        .map(|r| agent_view(&service, r))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "agents": agents })))
}

fn own_agent(service: &Service, account: &Account, id: &str) -> ApiResult<AgentRow> {
    service
        .registry
        .agent(&account.id, id)
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)
}

async fn get_agent(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let account = account_only(&service, &headers)?;
    let row = own_agent(&service, &account, &id)?;
    Ok(Json(agent_view(&service, &row)?))
}

async fn patch_agent(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(patch): Json<Value>,
) -> ApiResult<Json<Value>> {
    let account = account_only(&service, &headers)?;
    let mut row = own_agent(&service, &account, &id)?;
    let Value::Object(changes) = &patch else {
        return Err(ApiError::bad_request(
            "a JSON merge patch object is expected",
        ));
    };
    for key in changes.keys() {
        if !["name", "config", "policy"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("unknown field `{key}`")));
        }
    }
    if let Some(name) = changes.get("name").and_then(Value::as_str) {
        check_name(name)?;
        row.name = name.to_string();
    }
    if let Some(config_patch) = changes.get("config") {
        let stored = service
            .open_config(&account.id, &id, &row.sealed_config)
            .ok_or_else(|| ApiError::internal("an agent config does not decrypt"))?;
        let merged = crate::Decrypted(merge_patch(&stored, config_patch));
        if !merged.is_object() {
            return Err(ApiError::bad_request("config must stay a JSON object"));
        }
        row.sealed_config = service
            .seal_config(&account.id, &id, &merged)
            .map_err(ApiError::internal)?;
    }
    if let Some(policy_patch) = changes.get("policy") {
        let stored: Value = serde_json::from_str(&row.policy).unwrap_or(json!({}));
        let merged = merge_patch(&stored, policy_patch);
        let policy: AgentPolicy = serde_json::from_value(merged)
            .map_err(|e| ApiError::bad_request(format!("policy: {e}")))?;
        check_policy(&policy)?;
        row.policy = serde_json::to_string(&policy).map_err(ApiError::internal)?;
        service.workspaces.forget_agent(&account.id, &id);
    }
    service
        .registry
        .update_agent(&row)
        .map_err(ApiError::internal)?;
    let _ = service.registry.audit(
        Some(&account.id),
        "account",
        "update agent",
        Some(&id),
        "ok",
    );
    Ok(Json(agent_view(&service, &row)?))
}

async fn delete_agent(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let account = account_only(&service, &headers)?;
    if !service
        .registry
        .delete_agent(&account.id, &id)
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found());
    }
    service.workspaces.forget_agent(&account.id, &id);
    let _ = service.registry.audit(
        Some(&account.id),
        "account",
        "delete agent",
        Some(&id),
        "ok",
    );
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_token(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let account = account_only(&service, &headers)?;
    let token = secrets::generate(Kind::Agent).map_err(ApiError::internal)?;
    if !service
        .registry
        .set_agent_digest(&account.id, &id, &secrets::digest(&token))
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found());
    }
    let _ = service.registry.audit(
        Some(&account.id),
        "account",
        "rotate agent token",
        Some(&id),
        "ok",
    );
    Ok(Json(json!({"token": token.as_str()})))
}

// --------------------------------------------------------------------- files

/// The caller's workspace, through the caller's stack.
fn workspace(service: &Service, caller: &Caller) -> ApiResult<(String, FileStorage<Stack>)> {
    let stack = match caller {
        Caller::Account(a) => service.workspaces.for_account(&a.id)?,
        Caller::Agent {
            account,
            agent,
            policy,
        } => {
            let mut policy = policy.clone();
            policy.rate = policy.rate.or(service.config.default_rate);
            service
                .workspaces
                .for_agent(&account.id, &agent.id, &policy)?
        }
        Caller::Admin => return Err(ApiError::forbidden("the admin has no workspace")),
    };
    let account = caller.account().map(|a| a.id.clone()).unwrap_or_default();
    Ok((account, FileStorage::new(stack)))
}

/// A caller's workspace for one file operation: its files (through the
/// caller's stack, as `Deref`), and permits for streamed work.
pub(crate) struct OpenWorkspace {
    fs: FileStorage<Stack>,
    account: String,
    actor: String,
    service: Shared,
    /// The account's tree lock (see `Workspaces::tree`).
    tree: Arc<parking_lot::RwLock<()>>,
}

impl std::ops::Deref for OpenWorkspace {
    type Target = FileStorage<Stack>;
    fn deref(&self) -> &FileStorage<Stack> {
        &self.fs
    }
}

impl OpenWorkspace {
    /// A permit for a streamed upload or download (see
    /// [`crate::workspace::MAX_HEAVY_PER_ACCOUNT`]).
    fn heavy(&self, path: &str) -> Result<crate::workspace::HeavyPermit, FsError> {
        self.service.workspaces.heavy(&self.account, path)
    }

    /// Audits `action` on `path` with its outcome.
    fn audit<T>(
        &self,
        action: &str,
        path: &str,
        result: &Result<T, FsError>,
    ) -> Result<(), crate::registry::RegistryError> {
        audit_file_op(
            &self.service,
            &self.fs,
            &self.account,
            &self.actor,
            action,
            path,
            &outcome_of(result),
        )
    }
}

/// How an operation ended, in the audit's words: `ok`, or the error's kind.
pub(crate) fn outcome_of<T>(result: &Result<T, FsError>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Audits a file operation with the path as asked and, where the asked
/// form is not already resolved, where it resolves to (looked up only
/// then: a lookup through the caller's stack is not free). An error means
/// no healthy writer took the record: the operation must not be reported
/// as done.
pub(crate) fn audit_file_op(
    service: &Service,
    fs: &FileStorage<Stack>,
    account: &str,
    actor: &str,
    action: &str,
    path: &str,
    outcome: &str,
) -> Result<(), crate::registry::RegistryError> {
    let resolved = (crate::registry::lexical_resolution(path) != path)
        .then(|| fs.canonicalize(path).ok())
        .flatten()
        .map(|p| p.display().to_string());
    service.registry.audit_resolved(
        Some(account),
        actor,
        action,
        Some(path),
        resolved.as_deref(),
        outcome,
    )?;
    // A change is confirmed only once its record is committed: a crash
    // after the answer cannot leave a change the log does not show.
    if changes_files(action) && outcome == "ok" {
        service.registry.flush_audit();
        service.registry.audit_ready()?;
    }
    Ok(())
}

/// Whether an audited action changes files (its record is then waited for).
fn changes_files(action: &str) -> bool {
    let action = action.strip_prefix("mcp ").unwrap_or(action);
    matches!(
        action,
        "write"
            | "delete"
            | "mkdir"
            | "move"
            | "copy"
            | "move to"
            | "copy to"
            | "write_file"
            | "make_dir"
    )
}

/// Runs a file operation on the blocking pool and audits it.
async fn file_op<T: Send + 'static>(
    service: &Shared,
    headers: &HeaderMap,
    action: &'static str,
    path: String,
    op: impl FnOnce(&OpenWorkspace, &str) -> Result<T, FsError> + Send + 'static,
) -> ApiResult<T> {
    let caller = authenticate(service, headers)?;
    let actor = caller.actor();
    let service = service.clone();
    tokio::task::spawn_blocking(move || {
        // Opening a workspace may scan it: on the blocking pool too.
        let (account, fs) = workspace(&service, &caller)?;
        let tree = service.workspaces.tree(&account);
        let open = OpenWorkspace {
            fs,
            account,
            actor,
            service: service.clone(),
            tree,
        };
        // An operation that may take a whole folder runs alone in the
        // account; every other change shares (an upload only to make its
        // folders, open and commit); a read changes nothing and takes none.
        let result = match action {
            "move" | "copy" | "delete" => {
                let _alone = open.tree.write();
                op(&open, &path)
            }
            "mkdir" => {
                let _shared = open.tree.read();
                op(&open, &path)
            }
            _ => op(&open, &path),
        };
        // No operation is confirmed without its record.
        if let Err(e) = open.audit(action, &path, &result)
            && result.is_ok()
        {
            return Err(audit_unavailable(e));
        }
        result.map_err(|e| explained(&caller, e))
    })
    .await
    .map_err(ApiError::internal)?
}

/// The API error for `error`, a quota refusal said in the words of the
/// limit it hit: the agent's ceiling on the workspace, or the account's
/// quota.
fn explained(caller: &Caller, error: FsError) -> ApiError {
    let Some(anyfs::QuotaFigures {
        limit,
        requested,
        usage,
    }) = error
        .quota()
        .filter(|_| error.kind() == anyfs::FsErrorKind::QuotaExceeded)
    else {
        return ApiError::from(error);
    };
    let path = error.path();
    let message = match caller {
        Caller::Agent { policy, .. } if policy.quota == Some(limit) => format!(
            "{}: this agent may add data only while the workspace holds at most {limit} bytes \
             (the quota of its policy); the workspace holds {usage} bytes and this needs \
             {requested} more",
            path.display()
        ),
        _ => format!(
            "{}: the workspace quota is {limit} bytes; it holds {usage} bytes and this needs \
             {requested} more",
            path.display()
        ),
    };
    let mut api = ApiError::from(error);
    api.message = message;
    api
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

async fn list_root(State(service): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let value = file_op(&service, &headers, "list", "/".into(), |fs, path| {
        listing(fs, path)
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

async fn read_file(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> ApiResult<Response> {
    let path = vpath(&path);
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
            reader: Box<dyn Read + Send>,
            len: u64,
            range: Option<(u64, u64, u64)>,
            keep: (FileStorage<Stack>, crate::workspace::HeavyPermit),
        },
        BadRange(u64),
    }
    let got = file_op(&service, &headers, "read", path, move |fs, path| {
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
        Ok(Got::Stream {
            reader: Box::new(reader.take(len)),
            len,
            range: ranged.then_some((start, end, meta.len)),
            keep: (fs.fs.clone(), permit),
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
            reader,
            len,
            range,
            keep,
        } => {
            // Streamed: 64 KiB at a time from a blocking reader.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            tokio::task::spawn_blocking(move || {
                let _keep = keep;
                let mut reader = reader;
                let mut buf = vec![0u8; 64 * 1024];
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
async fn write_file(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
    body: Body,
) -> ApiResult<Response> {
    use futures_util::StreamExt;
    let path = vpath(&path);
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // The body flows to a blocking writer through a small channel: a large
    // upload never sits in memory whole. `None` says the body broke off.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Option<Bytes>>(4);
    let writer = file_op(&service, &headers, "write", path, move |fs, path| {
        // Like an object store: the folders a file goes into are made.
        if let Some((parent, _)) = anyfs::path::split_parent(std::path::Path::new(path)) {
            let _shared = fs.tree.read();
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
            let _shared = fs.tree.read();
            fs.open_write(path)?
        };
        let mut written = 0u64;
        for chunk in rx {
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
        let _shared = fs.tree.read();
        out.commit()?;
        Ok(written)
    });
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
                    let tx = tx.clone();
                    let _ = tokio::task::spawn_blocking(move || tx.send(None)).await;
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
            let tx = tx.clone();
            refused = tokio::task::spawn_blocking(move || tx.send(Some(chunk)))
                .await
                .map(|r| r.is_err())
                .unwrap_or(true);
        }
        drop(tx);
    };
    let (written, ()) = tokio::join!(writer, feed);
    let written = written?;
    Ok((StatusCode::CREATED, Json(json!({"written": written}))).into_response())
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    recursive: bool,
}

async fn delete_file(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    file_op(
        &service,
        &headers,
        "delete",
        vpath(&path),
        move |fs, path| {
            let meta = fs.symlink_metadata(path)?;
            if meta.is_dir() {
                if q.recursive {
                    fs.remove_dir_all(path)
                } else {
                    fs.remove_dir(path)
                }
            } else {
                fs.remove_file(path)
            }
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

async fn stat(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Value>> {
    let value = file_op(&service, &headers, "stat", vpath(&q.path), |fs, path| {
        let m = fs.metadata(path)?;
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

async fn mkdir(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<PathQuery>,
) -> ApiResult<StatusCode> {
    file_op(&service, &headers, "mkdir", vpath(&q.path), |fs, path| {
        fs.create_dir_all(path)
    })
    .await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct FromTo {
    from: String,
    to: String,
}

/// A two-path operation (`move`, `copy`) on the caller's workspace.
async fn from_to(
    service: &Shared,
    headers: &HeaderMap,
    action: &'static str,
    q: FromTo,
    op: fn(&FileStorage<Stack>, &str, &str) -> Result<(), FsError>,
) -> ApiResult<StatusCode> {
    let to = vpath(&q.to);
    file_op(service, headers, action, vpath(&q.from), move |fs, from| {
        let result = op(fs, from, &to);
        // The destination is audited too (`move` records the source).
        fs.audit(&format!("{action} to"), &to, &result)
            .map_err(|e| FsError::backend(to.as_str(), "audit", e.to_string()))?;
        result
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn move_node(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<FromTo>,
) -> ApiResult<StatusCode> {
    from_to(&service, &headers, "move", q, |fs, from, to| {
        fs.rename(from, to)
    })
    .await
}

async fn copy_node(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(q): Json<FromTo>,
) -> ApiResult<StatusCode> {
    from_to(&service, &headers, "copy", q, |fs, from, to| {
        fs.copy(from, to)
    })
    .await
}

// ---------------------------------------------------------------- executions

/// The parts of an execution's state.
const EXECUTION_FIELDS: [&str; 4] = ["input", "output", "tool_calls", "memory"];

fn execution_view(service: &Service, row: &crate::registry::ExecutionRow) -> ApiResult<Value> {
    let state = service
        .open_sealed("execution", &row.account_id, &row.id, &row.sealed)
        .ok_or_else(|| ApiError::internal("an execution does not decrypt"))?;
    let mut view = json!({
        "id": row.id,
        "agent_id": row.agent_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    });
    for field in EXECUTION_FIELDS {
        view[field] = state.get(field).cloned().unwrap_or(Value::Null);
    }
    Ok(view)
}

fn execution_state(body: &Value) -> ApiResult<Value> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "an object with input, output, tool_calls, memory",
        ));
    };
    let mut state = serde_json::Map::new();
    for (key, value) in map {
        if !EXECUTION_FIELDS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("unknown field `{key}`")));
        }
        state.insert(key.clone(), value.clone());
    }
    Ok(Value::Object(state))
}

/// The caller's account, and the agent when the caller is one.
fn owner(service: &Service, headers: &HeaderMap) -> ApiResult<(Account, Option<String>)> {
    match authenticate(service, headers)? {
        Caller::Account(a) => Ok((a, None)),
        Caller::Agent { account, agent, .. } => Ok((account, Some(agent.id))),
        Caller::Admin => Err(ApiError::forbidden("the admin has no executions")),
    }
}

async fn create_execution(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    let (account, agent) = owner(&service, &headers)?;
    let state = execution_state(&body)?;
    let id = format!("exec_{}", uuid::Uuid::new_v4().simple());
    let at = now();
    let row = crate::registry::ExecutionRow {
        sealed: service
            .seal("execution", &account.id, &id, &state)
            .map_err(ApiError::internal)?,
        id: id.clone(),
        account_id: account.id.clone(),
        agent_id: agent,
        created_at: at,
        updated_at: at,
    };
    service
        .registry
        .put_execution(&row)
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(execution_view(&service, &row)?)))
}

/// An execution the caller may see: its account's, and for an agent only
/// its own; anything else is 404, as for one that does not exist.
fn own_execution(
    service: &Service,
    headers: &HeaderMap,
    id: &str,
) -> ApiResult<crate::registry::ExecutionRow> {
    let (account, agent) = owner(service, headers)?;
    let row = service
        .registry
        .execution(&account.id, id)
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)?;
    if agent.is_some() && row.agent_id != agent {
        return Err(ApiError::not_found());
    }
    Ok(row)
}

async fn list_executions(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (account, agent) = owner(&service, &headers)?;
    let rows = service
        .registry
        .executions(&account.id, agent.as_deref())
        .map_err(ApiError::internal)?;
    let list = rows
        .iter()
        .map(|r| execution_view(&service, r))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "executions": list })))
}

async fn get_execution(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let row = own_execution(&service, &headers, &id)?;
    Ok(Json(execution_view(&service, &row)?))
}

async fn patch_execution(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(patch): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut row = own_execution(&service, &headers, &id)?;
    execution_state(&patch)?;
    let stored = service
        .open_sealed("execution", &row.account_id, &row.id, &row.sealed)
        .ok_or_else(|| ApiError::internal("an execution does not decrypt"))?;
    let merged = merge_patch(&stored, &patch);
    row.sealed = service
        .seal("execution", &row.account_id, &row.id, &merged)
        .map_err(ApiError::internal)?;
    row.updated_at = now();
    service
        .registry
        .put_execution(&row)
        .map_err(ApiError::internal)?;
    Ok(Json(execution_view(&service, &row)?))
}

async fn delete_execution(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let row = own_execution(&service, &headers, &id)?;
    service
        .registry
        .delete_execution(&row.account_id, &row.id)
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

// -------------------------------------------------------------------- skills

/// Unpacks a `.tar.gz` or `.zip` under `/skills/<name>/`, replacing what
/// was there; a bundle with any entry that would land elsewhere is refused
/// whole, before anything is written.
async fn install_skill(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let account = account_only(&service, &headers)?;
    let refused = |e: crate::bundle::Refused| {
        let _ = service.registry.audit(
            Some(&account.id),
            "account",
            "install skill",
            Some(&name),
            "refused",
        );
        let mut err = ApiError::bad_request(format!("bundle refused: {}", e.0));
        err.kind = "BundleRefused";
        err
    };
    crate::bundle::check_name(&name).map_err(refused)?;
    let entries = crate::bundle::read(&body).map_err(refused)?;
    let target = format!("/skills/{name}");
    let staging = format!("/skills/.staging-{}", uuid::Uuid::new_v4().simple());
    let svc = service.clone();
    let account_id = account.id.clone();
    let (files, bytes) = tokio::task::spawn_blocking(move || {
        let fs = FileStorage::new(svc.workspaces.for_account(&account_id)?);
        let unpack = || -> Result<(usize, u64), FsError> {
            fs.create_dir_all(&staging)?;
            let (mut files, mut bytes) = (0, 0u64);
            for entry in &entries {
                match entry {
                    crate::bundle::Entry::Dir(p) => fs.create_dir_all(format!("{staging}/{p}"))?,
                    crate::bundle::Entry::File(p, data) => {
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
            if fs.exists(&target)? {
                fs.remove_dir_all(&target)?;
            }
            fs.rename(&staging, &target)?;
            Ok((files, bytes))
        };
        let result = unpack();
        if result.is_err() {
            let _ = fs.remove_dir_all(&staging);
        }
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        let _ = svc.registry.audit(
            Some(&account_id),
            "account",
            "install skill",
            Some(&target),
            &outcome,
        );
        result
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((
        StatusCode::CREATED,
        Json(json!({"skill": name, "files": files, "bytes": bytes})),
    ))
}

/// `GET /v1/skills`: the names of the skills installed under `/skills`
/// (an empty list when there are none).
async fn list_skills(State(service): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let names = file_op(
        &service,
        &headers,
        "list skills",
        "/skills".into(),
        |fs, path| {
            let entries = match fs.read_dir(path) {
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
        },
    )
    .await?;
    Ok(Json(json!({ "skills": names })))
}

// --------------------------------------------------------------------- audit

/// The most records one page of `GET /v1/audit` holds.
const AUDIT_PAGE_MAX: usize = 1000;

/// `GET /v1/audit`'s query: a page after `cursor` (the last `seq` seen),
/// filtered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    cursor: Option<i64>,
    limit: Option<usize>,
    /// An agent id: only that agent's records.
    agent: Option<String>,
    /// Only records of this action (`write`, `read`, `mcp write_file`, …).
    operation: Option<String>,
    /// Only records with this outcome (`ok`, `AccessDenied`, …).
    outcome: Option<String>,
    /// Only records at or after this time (seconds since the epoch).
    since: Option<i64>,
    /// Only records at or before this time.
    until: Option<i64>,
}

/// Whether an agent with `policy` may see a record: not if its path, or
/// where that path resolves to, is one the policy hides.
fn visible_to(
    policy: &AgentPolicy,
) -> ApiResult<impl Fn(&crate::registry::AuditRecord) -> bool + Send + use<>> {
    let filter = if policy.deny.is_empty() {
        None
    } else {
        let mut builder = anyfs::PathFilterLayer::builder().allow("/**");
        for glob in &policy.deny {
            builder = builder.deny(glob.clone());
        }
        Some(builder.build().map_err(ApiError::internal)?)
    };
    Ok(
        move |r: &crate::registry::AuditRecord| match (&filter, &r.path) {
            (_, None) => r.sealed.is_none(),
            (None, Some(_)) => true,
            (Some(filter), Some(path)) => {
                let resolved = r
                    .resolved_path
                    .clone()
                    .unwrap_or_else(|| crate::registry::lexical_resolution(path));
                [crate::registry::lexical_resolution(path), resolved]
                    .iter()
                    .all(|p| filter.is_allowed(std::path::Path::new(p)))
            }
        },
    )
}

/// The caller's audit records, a page at a time: everything of its account
/// for the account; for an agent only its own records, and only of paths
/// its policy lets it see.
async fn audit(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<Value>> {
    let caller = authenticate(&service, &headers)?;
    let mut query = crate::registry::AuditQuery {
        cursor: params.cursor.unwrap_or(0),
        limit: params.limit.unwrap_or(100).clamp(1, AUDIT_PAGE_MAX),
        actor: params.agent.map(|id| format!("agent:{id}")),
        action: params.operation,
        outcome: params.outcome,
        since: params.since,
        until: params.until,
        ..Default::default()
    };
    let policy = match &caller {
        Caller::Account(account) => {
            query.account = account.id.clone();
            None
        }
        Caller::Agent {
            account,
            agent,
            policy,
        } => {
            query.account = account.id.clone();
            let own = format!("agent:{}", agent.id);
            if query.actor.as_ref().is_some_and(|a| *a != own) {
                // Another agent's records: none to show.
                return Ok(Json(json!({"records": [], "next_cursor": null})));
            }
            query.actor = Some(own);
            Some(policy.clone())
        }
        Caller::Admin => return Err(ApiError::forbidden("the admin has no account log")),
    };
    let visible = visible_to(&policy.unwrap_or_default())?;
    let (records, next) = tokio::task::spawn_blocking(move || {
        service
            .registry
            .audit_page(&query, visible)
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "records": records, "next_cursor": next })))
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
