//! `/v1/accounts` (sign-up, the caller's own account) and
//! `/v1/admin/accounts` (the administrator's view of every account).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, Shared, account_only, admin_only, audit_ready, blocking, check_name,
};
use crate::Service;
use crate::registry::{Account, Outcome};
use crate::secrets::{self, SecretKind};

#[derive(Deserialize)]
pub(super) struct NewAccount {
    name: String,
}

pub(super) async fn signup(
    State(service): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<NewAccount>,
) -> ApiResult<impl IntoResponse> {
    check_name(&body.name)?;
    audit_ready(&service)?;
    blocking(&service, move |service| {
        if let Some(wait) = service.signup_allowed(peer.ip())? {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "too many sign-ups from this address",
            );
            e.retry_after = Some(wait.as_secs().max(1));
            return Err(e);
        }
        let secret = secrets::generate(SecretKind::Account).map_err(ApiError::internal)?;
        let id = format!("acct_{}", uuid::Uuid::new_v4().simple());
        let account =
            service
                .registry
                .create_account(&id, &body.name, &secrets::digest(&secret))?;
        let _ = service
            .registry
            .audit(Some(&id), "account", "create account", None, Outcome::Ok);
        Ok((
            StatusCode::CREATED,
            Json(json!({"account": account, "secret": secret.as_str()})),
        ))
    })
    .await
}

pub(super) async fn me(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Account>> {
    blocking(&service, move |service| {
        Ok(Json(account_only(service, &headers)?))
    })
    .await
}

pub(super) async fn patch_me(
    State(service): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<NewAccount>,
) -> ApiResult<Json<Account>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        check_name(&body.name)?;
        service.registry.rename_account(&account.id, &body.name)?;
        let _ = service.registry.audit(
            Some(&account.id),
            "account",
            "rename account",
            None,
            Outcome::Ok,
        );
        let account = service
            .registry
            .account(&account.id)?
            .ok_or_else(ApiError::not_found)?;
        Ok(Json(account))
    })
    .await
}

/// Deletes an account with everything of it: its agents, executions and
/// workspace.
fn remove_account(service: &Service, id: &str, actor: &str) -> ApiResult<Value> {
    let (agents, executions) = service
        .registry
        .delete_account(id)?
        .ok_or_else(ApiError::not_found)?;
    let workspace = service.workspaces.delete(id);
    let _ = service
        .registry
        .audit(Some(id), actor, "delete account", None, Outcome::Ok);
    Ok(json!({"removed": {
        "account": id,
        "agents": agents,
        "executions": executions,
        "workspace": workspace,
        "keys": "derived from the master key and the account id: nothing of them is kept"
    }}))
}

pub(super) async fn delete_me(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        Ok(Json(remove_account(service, &account.id, "account")?))
    })
    .await
}

pub(super) async fn rotate_secret(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        let account = account_only(service, &headers)?;
        let secret = secrets::generate(SecretKind::Account).map_err(ApiError::internal)?;
        service
            .registry
            .set_account_digest(&account.id, &secrets::digest(&secret))?;
        let _ = service.registry.audit(
            Some(&account.id),
            "account",
            "rotate secret",
            None,
            Outcome::Ok,
        );
        Ok(Json(json!({"secret": secret.as_str()})))
    })
    .await
}

pub(super) async fn admin_list(
    State(service): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        admin_only(service, &headers)?;
        let accounts = service.registry.accounts()?;
        Ok(Json(json!({
            "accounts": accounts,
            "open_workspaces": service.workspaces.open_count(),
        })))
    })
    .await
}

pub(super) async fn admin_get(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Account>> {
    blocking(&service, move |service| {
        admin_only(service, &headers)?;
        let account = service.registry.account(&id)?;
        Ok(Json(account.ok_or_else(ApiError::not_found)?))
    })
    .await
}

pub(super) async fn admin_delete(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| {
        admin_only(service, &headers)?;
        Ok(Json(remove_account(service, &id, "admin")?))
    })
    .await
}

/// Suspends or unsuspends an account (the admin only).
async fn set_suspended(
    service: Shared,
    headers: HeaderMap,
    id: String,
    suspended: bool,
) -> ApiResult<Json<Account>> {
    blocking(&service, move |service| {
        admin_only(service, &headers)?;
        if !service.registry.set_suspended(&id, suspended)? {
            return Err(ApiError::not_found());
        }
        let action = if suspended {
            "suspend account"
        } else {
            "unsuspend account"
        };
        let _ = service
            .registry
            .audit(Some(&id), "admin", action, None, Outcome::Ok);
        let account = service.registry.account(&id)?;
        Ok(Json(account.ok_or_else(ApiError::not_found)?))
    })
    .await
}

pub(super) async fn admin_suspend(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Account>> {
    set_suspended(service, headers, id, true).await
}

pub(super) async fn admin_unsuspend(
    State(service): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Account>> {
    set_suspended(service, headers, id, false).await
}
