//! `/v1/executions`: an agent run's state (input, output, tool calls,
//! memory), sealed at rest. The account sees all of its executions, an
//! agent only its own.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Shared, authenticate, blocking};
use crate::Service;
use crate::caller::Caller;
use crate::redact::merge_patch;
use crate::registry::{Account, ExecutionRow, now};

/// The parts of an execution's state.
const FIELDS: [&str; 4] = ["input", "output", "tool_calls", "memory"];

/// An execution as the API shows it: its state opened.
fn view(service: &Service, row: &ExecutionRow) -> ApiResult<Value> {
    let state = service
        .sealer
        .open_json("execution", &row.account_id, &row.id, &row.sealed)
        .ok_or_else(|| ApiError::internal("an execution does not decrypt"))?;
    let mut view = json!({
        "id": row.id,
        "agent_id": row.agent_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    });
    for field in FIELDS {
        view[field] = state.get(field).cloned().unwrap_or(Value::Null);
    }
    Ok(view)
}

/// The state in a request body: an object of [`FIELDS`] only.
fn state_of(body: &Value) -> ApiResult<Value> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "an object with input, output, tool_calls, memory",
        ));
    };
    let mut state = serde_json::Map::new();
    for (key, value) in map {
        if !FIELDS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("unknown field `{key}`")));
        }
        state.insert(key.clone(), value.clone());
    }
    Ok(Value::Object(state))
}

/// Seals an execution's state into its row.
fn seal_into(service: &Service, row: &mut ExecutionRow, state: &Value) -> ApiResult<()> {
    row.sealed = service
        .sealer
        .seal_json("execution", &row.account_id, &row.id, state)
        .map_err(ApiError::internal)?;
    Ok(())
}

/// The caller's account, and the agent when the caller is one.
fn owner(service: &Service, headers: &HeaderMap) -> ApiResult<(Account, Option<String>)> {
    match authenticate(service, headers)? {
        Caller::Account(a) => Ok((a, None)),
        Caller::Agent { account, agent, .. } => Ok((account, Some(agent.id))),
        Caller::Admin => Err(ApiError::forbidden("the admin has no executions")),
    }
}

pub(super) async fn create(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    blocking(&service, move |service| {
        let (account, agent) = owner(service, &headers)?;
        let state = state_of(&body)?;
        let at = now();
        let mut row = ExecutionRow {
            id: format!("exec_{}", uuid::Uuid::new_v4().simple()),
            account_id: account.id,
            agent_id: agent,
            sealed: Vec::new(),
            created_at: at,
            updated_at: at,
        };
        seal_into(service, &mut row, &state)?;
        service.registry.put_execution(&row)?;
        Ok((StatusCode::CREATED, Json(view(service, &row)?)))
    })
    .await
}

/// An execution the caller may see: its account's, and for an agent only
/// its own; anything else is 404, as for one that does not exist.
fn own_execution(service: &Service, headers: &HeaderMap, id: &str) -> ApiResult<ExecutionRow> {
    let (account, agent) = owner(service, headers)?;
    let row = service
        .registry
        .execution(&account.id, id)?
        .ok_or_else(ApiError::not_found)?;
    if agent.is_some() && row.agent_id != agent {
        return Err(ApiError::not_found());
    }
    Ok(row)
}

pub(super) async fn list(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let (account, agent) = owner(service, &headers)?;
        let rows = service.registry.executions(&account.id, agent.as_deref())?;
        let list = rows
            .iter()
            .map(|r| view(service, r))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Json(json!({ "executions": list })))
    })
    .await
}

pub(super) async fn get(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let row = own_execution(service, &headers, &id)?;
        Ok(Json(view(service, &row)?))
    })
    .await
}

pub(super) async fn patch(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(patch): Json<Value>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let mut row = own_execution(service, &headers, &id)?;
        state_of(&patch)?;
        let stored = service
            .sealer
            .open_json("execution", &row.account_id, &row.id, &row.sealed)
            .ok_or_else(|| ApiError::internal("an execution does not decrypt"))?;
        seal_into(service, &mut row, &merge_patch(&stored, &patch))?;
        row.updated_at = now();
        service.registry.put_execution(&row)?;
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
        let row = own_execution(service, &headers, &id)?;
        service
            .registry
            .delete_execution(&row.account_id, &row.id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
