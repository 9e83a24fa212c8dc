//! `GET /v1/audit`: the caller's audit records, a page at a time.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Shared, authenticate, blocking};
use crate::Service;
use crate::caller::Caller;
use crate::registry::{AuditQuery, AuditRecord, lexical_resolution};
use crate::workspace::AgentPolicy;

/// The most records one page of `GET /v1/audit` holds.
const AUDIT_PAGE_MAX: usize = 1000;

/// `GET /v1/audit`'s query: a page after `cursor` (the last `seq` seen),
/// filtered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
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
fn visible_to(policy: &AgentPolicy) -> ApiResult<impl Fn(&AuditRecord) -> bool + Send + use<>> {
    let filter = if policy.deny.is_empty() {
        None
    } else {
        let mut builder = anyfs::PathFilterLayer::builder().allow("/**");
        for glob in &policy.deny {
            builder = builder.deny(glob.clone());
        }
        Some(builder.build().map_err(ApiError::internal)?)
    };
    Ok(move |r: &AuditRecord| match (&filter, &r.path) {
        (_, None) => r.sealed.is_none(),
        (None, Some(_)) => true,
        (Some(filter), Some(path)) => {
            let resolved = r
                .resolved_path
                .clone()
                .unwrap_or_else(|| lexical_resolution(path));
            [lexical_resolution(path), resolved]
                .iter()
                .all(|p| filter.is_allowed(std::path::Path::new(p)))
        }
    })
}

/// The caller's audit records, a page at a time: everything of its account
/// for the account; for an agent only its own records, and only of paths
/// its policy lets it see.
pub(super) async fn page(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<Value>> {
    blocking(&service, move |service| page_for(service, &headers, params)).await
}

/// One page of the records `headers`' caller may see.
fn page_for(service: &Service, headers: &HeaderMap, params: AuditParams) -> ApiResult<Json<Value>> {
    let caller = authenticate(service, headers)?;
    let mut query = AuditQuery {
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
    let (records, next) = service.registry.audit_page(&query, &visible)?;
    Ok(Json(json!({ "records": records, "next_cursor": next })))
}
