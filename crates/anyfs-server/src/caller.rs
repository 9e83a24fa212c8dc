//! Who is calling: the bearer secret alone decides, whatever the transport
//! it came over. Every refusal is audited.

use anyfs::FileStorage;

use crate::Service;
use crate::failure::Failure;
use crate::registry::{Account, AgentRow, Login, LoginAhead, Outcome};
use crate::secrets::{self, SecretKind};
use crate::workspace::{AgentPolicy, Stack};

/// Who is calling, from the bearer secret alone.
#[derive(Debug)]
pub(crate) enum Caller {
    /// An account's own secret: everything of that account.
    Account(Account),
    /// An agent's token: the account's files through the agent's policy.
    Agent {
        account: Account,
        agent: AgentRow,
        policy: Box<AgentPolicy>,
    },
    /// The service administrator: accounts, never their files.
    Admin,
}

impl Caller {
    /// The account the caller acts in (none for the admin).
    pub(crate) fn account(&self) -> Option<&Account> {
        match self {
            Caller::Account(a) | Caller::Agent { account: a, .. } => Some(a),
            Caller::Admin => None,
        }
    }

    /// The caller as the audit names it.
    pub(crate) fn actor(&self) -> String {
        match self {
            Caller::Account(_) => "account".into(),
            Caller::Agent { agent, .. } => format!("agent:{}", agent.id),
            Caller::Admin => "admin".into(),
        }
    }
}

/// The secret of an `Authorization: Bearer …` header value.
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    authorization.strip_prefix("Bearer ").map(str::trim)
}

/// Reads, where the registry is behind a network, what authenticating
/// `secret` needs without holding a thread ([`Registry::login_ahead`]), for
/// [`authenticate_with`]. `None`: nothing to read ahead (no secret, the
/// admin's, or a registry that reads as fast where it blocks).
///
/// [`Registry::login_ahead`]: crate::registry::Registry::login_ahead
pub(crate) async fn login_ahead(
    service: &Service,
    secret: Option<&str>,
) -> Option<crate::registry::Result<LoginAhead>> {
    let secret = secret?;
    let agent = match SecretKind::of(secret)? {
        SecretKind::Account => false,
        SecretKind::Agent => true,
        SecretKind::Admin => return None,
    };
    let digest = secrets::digest(secret);
    Some(service.registry.login_ahead(&digest, agent)?.await)
}

/// Who `secret` belongs to. Refused while the audit log cannot be written
/// (nothing is done that could not be audited). Blocks on the registry.
pub(crate) fn authenticate(service: &Service, secret: Option<&str>) -> Result<Caller, Failure> {
    authenticate_with(service, secret, None)
}

/// [`authenticate`] with what [`login_ahead`] read (when it matches the
/// kind of `secret`) instead of reading the registry again.
pub(crate) fn authenticate_with(
    service: &Service,
    secret: Option<&str>,
    ahead: Option<crate::registry::Result<Login>>,
) -> Result<Caller, Failure> {
    service
        .registry
        .audit_ready()
        .map_err(|e| Failure::audit_unavailable(e, false))?;
    let refuse = |reason: &str| {
        tracing::debug!(reason, "authentication refused");
        let _ = service.registry.audit(
            None,
            "unknown",
            "authenticate",
            None,
            Outcome::Failed(Failure::Unauthorized.kind()),
        );
        Failure::Unauthorized
    };
    let suspended = |account: &Account, actor: &str| {
        let refused = Failure::Forbidden("the account is suspended");
        let _ = service.registry.audit(
            Some(&account.id),
            actor,
            "authenticate",
            None,
            Outcome::Failed(refused.kind()),
        );
        refused
    };
    let Some(secret) = secret else {
        return Err(refuse("no secret"));
    };
    let digest = secrets::digest(secret);
    match SecretKind::of(secret) {
        Some(SecretKind::Admin) if secrets::matches(secret, &service.admin_digest) => {
            Ok(Caller::Admin)
        }
        Some(SecretKind::Account) => {
            let found = match ahead {
                Some(Ok(Login::Account(found))) => found,
                Some(Err(e)) => return Err(e.into()),
                _ => service
                    .registry
                    .account_by_digest(&digest)
                    .map_err(Failure::from)?,
            };
            let (account, stored) = found.ok_or_else(|| refuse("unknown account secret"))?;
            if !secrets::matches(secret, &stored) {
                return Err(refuse("unknown account secret"));
            }
            if account.suspended {
                return Err(suspended(&account, "account"));
            }
            Ok(Caller::Account(account))
        }
        Some(SecretKind::Agent) => {
            let found = match ahead {
                Some(Ok(Login::Agent(found))) => found,
                Some(Err(e)) => return Err(e.into()),
                _ => service
                    .registry
                    .agent_and_account_by_digest(&digest)
                    .map_err(Failure::from)?,
            };
            let (agent, stored, account) = found.ok_or_else(|| refuse("unknown agent token"))?;
            if !secrets::matches(secret, &stored) {
                return Err(refuse("unknown agent token"));
            }
            let account = account.ok_or_else(|| refuse("agent of a deleted account"))?;
            if account.suspended {
                return Err(suspended(&account, "agent"));
            }
            // A policy that does not parse refuses the agent, never frees it.
            let policy = Box::new(serde_json::from_str(&agent.policy).map_err(Failure::internal)?);
            Ok(Caller::Agent {
                account,
                agent,
                policy,
            })
        }
        _ => Err(refuse("unrecognised secret")),
    }
}

/// The account of a caller that may manage it: its own secret. An agent's
/// token works files only (refused and audited), the admin uses the admin
/// routes.
pub(crate) fn account_owner(service: &Service, caller: Caller) -> Result<Account, Failure> {
    match caller {
        Caller::Account(a) => Ok(a),
        Caller::Agent { account, agent, .. } => {
            let refused = Failure::Forbidden("agent tokens work files only");
            let _ = service.registry.audit(
                Some(&account.id),
                &format!("agent:{}", agent.id),
                "manage",
                None,
                Outcome::Failed(refused.kind()),
            );
            Err(refused)
        }
        Caller::Admin => Err(Failure::Forbidden("use the admin routes")),
    }
}

/// The caller's workspace, through the caller's stack: the account's own,
/// or the agent's (its policy, and the service's default rate when the
/// policy sets none). Opening a workspace may scan it: blocks.
pub(crate) fn workspace(
    service: &Service,
    caller: &Caller,
) -> Result<(String, FileStorage<Stack>), Failure> {
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
        Caller::Admin => return Err(Failure::Forbidden("the admin has no workspace")),
    };
    let account = caller.account().map(|a| a.id.clone()).unwrap_or_default();
    Ok((account, FileStorage::new(stack)))
}
