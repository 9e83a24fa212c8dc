//! `/v1/agents`: an account's agents, their sealed configs (shown
//! redacted), their policies and their tokens.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Shared, account_only, blocking, check_name};
use crate::Service;
use crate::redact::{merge_patch, redact};
use crate::registry::{Account, AgentRow, Outcome, now};
use crate::sealing::Decrypted;
use crate::secrets::{self, SecretKind};
use crate::workspace::AgentPolicy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAgent {
    name: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    policy: AgentPolicy,
}

/// An agent as the API shows it: its config redacted.
fn view(service: &Service, row: &AgentRow) -> ApiResult<Value> {
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
    if let Some(branch) = &policy.workspace
        && branch.parse::<anyfs::snapshots::BranchId>().is_err()
    {
        let mut err = ApiError::bad_request(format!(
            "policy.workspace: {branch:?} is not a branch id (see GET /v1/branches)"
        ));
        err.kind = "InvalidPolicy";
        return Err(err);
    }
    Ok(())
}

/// Audits a change the account made to one of its agents.
fn audit_change(service: &Service, account: &Account, action: &str, agent: &str) {
    let _ = service.registry.audit(
        Some(&account.id),
        "account",
        action,
        Some(agent),
        Outcome::Ok,
    );
}

pub(super) async fn create(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<NewAgent>,
) -> ApiResult<impl IntoResponse> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
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
        let token = secrets::generate(SecretKind::Agent).map_err(ApiError::internal)?;
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
            .create_agent(&row, &secrets::digest(&token))?;
        audit_change(service, &account, "create agent", &id);
        let mut view = view(service, &row)?;
        view["token"] = Value::String(token.to_string());
        Ok((StatusCode::CREATED, Json(view)))
    })
    .await
}

pub(super) async fn list(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        let rows = service.registry.agents(&account.id)?;
        let agents = rows
            .iter()
            .map(|r| view(service, r))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Json(json!({ "agents": agents })))
    })
    .await
}

/// The account's agent `id` (another account's is 404, as one that does
/// not exist).
fn own_agent(service: &Service, account: &Account, id: &str) -> ApiResult<AgentRow> {
    service
        .registry
        .agent(&account.id, id)?
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn get(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        let row = own_agent(service, &account, &id)?;
        Ok(Json(view(service, &row)?))
    })
    .await
}

/// Applies a JSON merge patch of `name`, `config` and `policy` to `row`.
fn apply_patch(
    service: &Service,
    account: &Account,
    row: &mut AgentRow,
    patch: &Value,
) -> ApiResult<()> {
    let Value::Object(changes) = patch else {
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
            .open_config(&account.id, &row.id, &row.sealed_config)
            .ok_or_else(|| ApiError::internal("an agent config does not decrypt"))?;
        let merged = Decrypted(merge_patch(&stored, config_patch));
        if !merged.is_object() {
            return Err(ApiError::bad_request("config must stay a JSON object"));
        }
        row.sealed_config = service
            .seal_config(&account.id, &row.id, &merged)
            .map_err(ApiError::internal)?;
    }
    if let Some(policy_patch) = changes.get("policy") {
        let stored: Value = serde_json::from_str(&row.policy).unwrap_or(json!({}));
        let merged = merge_patch(&stored, policy_patch);
        let policy: AgentPolicy = serde_json::from_value(merged)
            .map_err(|e| ApiError::bad_request(format!("policy: {e}")))?;
        check_policy(&policy)?;
        row.policy = serde_json::to_string(&policy).map_err(ApiError::internal)?;
        service.workspaces.forget_agent(&account.id, &row.id);
    }
    Ok(())
}

pub(super) async fn patch(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(patch): Json<Value>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        let mut row = own_agent(service, &account, &id)?;
        apply_patch(service, &account, &mut row, &patch)?;
        service.registry.update_agent(&row)?;
        audit_change(service, &account, "update agent", &id);
        Ok(Json(view(service, &row)?))
    })
    .await
}

pub(super) async fn delete(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        if !service.registry.delete_agent(&account.id, &id)? {
            return Err(ApiError::not_found());
        }
        service.workspaces.forget_agent(&account.id, &id);
        audit_change(service, &account, "delete agent", &id);
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

pub(super) async fn rotate_token(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        let token = secrets::generate(SecretKind::Agent).map_err(ApiError::internal)?;
        if !service
            .registry
            .set_agent_digest(&account.id, &id, &secrets::digest(&token))?
        {
            return Err(ApiError::not_found());
        }
        audit_change(service, &account, "rotate agent token", &id);
        Ok(Json(json!({"token": token.as_str()})))
    })
    .await
}
