//! The OpenAPI document served at `/openapi.json`.

use serde_json::{Value, json};

/// Every route of the API: (method, path, summary, needs).
pub(crate) const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/v1/accounts",
        "Sign up; the API secret is returned this once",
        "none",
    ),
    ("get", "/v1/accounts/me", "The calling account", "account"),
    (
        "patch",
        "/v1/accounts/me",
        "Rename the calling account",
        "account",
    ),
    (
        "delete",
        "/v1/accounts/me",
        "Delete the account, its agents, executions and workspace",
        "account",
    ),
    (
        "post",
        "/v1/accounts/me/rotate-secret",
        "A new API secret; the old one stops working",
        "account",
    ),
    (
        "get",
        "/v1/admin/accounts",
        "Every account, and how many workspaces are open",
        "admin",
    ),
    ("get", "/v1/admin/accounts/{id}", "One account", "admin"),
    (
        "delete",
        "/v1/admin/accounts/{id}",
        "Delete an account and everything it has",
        "admin",
    ),
    (
        "post",
        "/v1/admin/accounts/{id}/suspend",
        "Refuse the account's secret and agent tokens",
        "admin",
    ),
    (
        "post",
        "/v1/admin/accounts/{id}/unsuspend",
        "Accept them again",
        "admin",
    ),
    (
        "post",
        "/v1/agents",
        "Create an agent; its token is returned this once",
        "account",
    ),
    (
        "get",
        "/v1/agents",
        "The account's agents, configs redacted",
        "account",
    ),
    (
        "get",
        "/v1/agents/{id}",
        "One agent, config redacted",
        "account",
    ),
    (
        "patch",
        "/v1/agents/{id}",
        "JSON merge patch of name, config, policy; `********` keeps a stored value",
        "account",
    ),
    ("delete", "/v1/agents/{id}", "Delete an agent", "account"),
    (
        "post",
        "/v1/agents/{id}/rotate-token",
        "A new agent token; the old one stops working",
        "account",
    ),
    (
        "get",
        "/v1/files",
        "List the workspace root",
        "account or agent",
    ),
    (
        "get",
        "/v1/files/{path}",
        "Read a file (Range supported) or list a directory",
        "account or agent",
    ),
    (
        "put",
        "/v1/files/{path}",
        "Write a file (streamed body; folders are made)",
        "account or agent",
    ),
    (
        "delete",
        "/v1/files/{path}",
        "Delete a file, or a directory (`?recursive=true` for a tree)",
        "account or agent",
    ),
    (
        "get",
        "/v1/fs/stat",
        "Metadata of `?path=`",
        "account or agent",
    ),
    (
        "post",
        "/v1/fs/mkdir",
        "Make a directory and its parents: `{\"path\"}`",
        "account or agent",
    ),
    (
        "post",
        "/v1/fs/move",
        "Move: `{\"from\", \"to\"}`",
        "account or agent",
    ),
    (
        "post",
        "/v1/fs/copy",
        "Copy a file: `{\"from\", \"to\"}`",
        "account or agent",
    ),
    (
        "post",
        "/v1/executions",
        "Record an execution: input, output, tool_calls, memory",
        "account or agent",
    ),
    (
        "get",
        "/v1/executions",
        "The caller's executions",
        "account or agent",
    ),
    (
        "get",
        "/v1/executions/{id}",
        "One execution",
        "account or agent",
    ),
    (
        "patch",
        "/v1/executions/{id}",
        "JSON merge patch of an execution",
        "account or agent",
    ),
    (
        "delete",
        "/v1/executions/{id}",
        "Delete an execution",
        "account or agent",
    ),
    (
        "put",
        "/v1/skills/{name}",
        "Install a skill bundle (.tar.gz or .zip) under /skills/{name}, whole or not at all",
        "account",
    ),
    (
        "get",
        "/v1/skills",
        "The names of the skills installed under /skills",
        "account or agent",
    ),
    (
        "get",
        "/v1/audit",
        "Audit records, oldest first, a page at a time (`next_cursor` is the `cursor` of the \
         next page, null at the end). The account sees all of its records; an agent only its \
         own, and only of paths its policy lets it see. Each record has `path` (as asked) and \
         `resolved_path`",
        "account or agent",
    ),
    (
        "post",
        "/v1/snapshots",
        "Take a snapshot of the workspace, `{\"name\"}`: one moment, read-only, sharing content",
        "account",
    ),
    (
        "get",
        "/v1/snapshots",
        "The workspace's snapshots, oldest first",
        "account",
    ),
    (
        "delete",
        "/v1/snapshots/{id}",
        "Delete a snapshot (409 while a branch counts from it)",
        "account",
    ),
    (
        "post",
        "/v1/snapshots/{id}/restore",
        "Make the workspace what the snapshot holds (the snapshot stays)",
        "account",
    ),
    (
        "get",
        "/v1/snapshots/{id}/files",
        "List a snapshot's root",
        "account",
    ),
    (
        "get",
        "/v1/snapshots/{id}/files/{path}",
        "Read a file of a snapshot (Range supported) or list a directory",
        "account",
    ),
    (
        "post",
        "/v1/branches",
        "Make a branch from a snapshot, `{\"snapshot\", \"name\"}`: a writable workspace of its own",
        "account",
    ),
    (
        "get",
        "/v1/branches",
        "The workspace's branches, each with the snapshot its changes count from",
        "account",
    ),
    ("delete", "/v1/branches/{id}", "Delete a branch", "account"),
    (
        "post",
        "/v1/branches/{id}/merge",
        "Apply the branch's changes since its base, `{\"into\", \"take\", \"paths\"}`; 409 with \
         every conflicting path, and nothing applied, unless `take` (`branch` or `into`) or \
         `paths` chooses a side",
        "account",
    ),
    (
        "get",
        "/v1/branches/{id}/files",
        "List a branch's root",
        "account",
    ),
    (
        "get",
        "/v1/branches/{id}/files/{path}",
        "Read a file of a branch or list a directory",
        "account",
    ),
    (
        "put",
        "/v1/branches/{id}/files/{path}",
        "Write a file of a branch (streamed body; folders are made)",
        "account",
    ),
    (
        "delete",
        "/v1/branches/{id}/files/{path}",
        "Delete a file or directory of a branch",
        "account",
    ),
    (
        "get",
        "/v1/diff",
        "The changes from one tree to another, one JSON object per line (`change`, `path`, \
         `old`, `new` with `type`, `size`, `mode`), streamed",
        "account",
    ),
    (
        "post",
        "/v1/exec",
        "Run a command in the caller's workspace, sandboxed (only when the service runs with \
         `--allow-exec`; 403 otherwise). Body: `{\"argv\": [...], \"stdin\": \"...\", \
         \"env\": {...}, \"timeout_s\": N}`. Answers once it ended: `exit_code`, `signal`, \
         `ended` (`timeout`, `cpu_time`, `memory`, `stopped` or null), `message`, `stdout` and `stderr` \
         (each with `_bytes`, `_truncated`, `_encoding`: utf-8 or base64), `duration_ms`, `cpu_ms` and `memory_peak_bytes` \
         (null where unknown); 429 \
         while the account runs its most commands at once",
        "account or agent",
    ),
    ("get", "/openapi.json", "This document", "none"),
    (
        "get",
        "/healthz",
        "`{\"status\": \"ok\"}`, or 503 while audit records cannot be written",
        "none",
    ),
    (
        "post",
        "/mcp",
        "MCP (Streamable HTTP): the files API as tools; every tool call needs the bearer secret",
        "account or agent",
    ),
];

/// Query parameters of the routes that take some: (method, path, name,
/// type, description).
const PARAMETERS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "get",
        "/v1/audit",
        "cursor",
        "integer",
        "The `seq` of the last record seen (the previous page's `next_cursor`)",
    ),
    (
        "get",
        "/v1/audit",
        "limit",
        "integer",
        "Records per page: 100 by default, at most 1000",
    ),
    (
        "get",
        "/v1/audit",
        "agent",
        "string",
        "Only this agent's records (an agent id)",
    ),
    (
        "get",
        "/v1/audit",
        "operation",
        "string",
        "Only records of this action (`write`, `read`, `delete`, `mcp write_file`, …)",
    ),
    (
        "get",
        "/v1/audit",
        "outcome",
        "string",
        "Only records with this outcome (`ok`, `AccessDenied`, `NotFound`, …)",
    ),
    (
        "get",
        "/v1/audit",
        "since",
        "integer",
        "Only records at or after this time (seconds since 1970)",
    ),
    (
        "get",
        "/v1/audit",
        "until",
        "integer",
        "Only records at or before this time (seconds since 1970)",
    ),
    (
        "get",
        "/v1/fs/stat",
        "path",
        "string",
        "The path to describe",
    ),
    (
        "delete",
        "/v1/files/{path}",
        "recursive",
        "boolean",
        "Remove a directory with everything in it",
    ),
    (
        "delete",
        "/v1/branches/{id}/files/{path}",
        "recursive",
        "boolean",
        "Remove a directory with everything in it",
    ),
    (
        "get",
        "/v1/diff",
        "from",
        "string",
        "The tree compared from: `live`, `snapshot:ID` or `branch:ID`",
    ),
    (
        "get",
        "/v1/diff",
        "to",
        "string",
        "The tree compared to (`live` by default)",
    ),
];

pub(crate) fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, needs) in ROUTES {
        let entry = paths
            .entry((*path).to_string())
            .or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "success"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "413": {"$ref": "#/components/responses/Error"},
                "415": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"},
                "503": {"$ref": "#/components/responses/Error"}
            }
        });
        if *needs != "none" {
            op["security"] = json!([{"bearer": []}]);
            op["x-caller"] = json!(needs);
        }
        // Every `{name}` of the path is a required path parameter; a
        // `{path}` is the rest of the URL, slashes and all.
        let mut parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                let description = if name == "path" {
                    "A path in the workspace, without its leading `/` (it may hold more `/`)"
                } else {
                    "The resource's id or name, as the API gave it"
                };
                json!({"name": name, "in": "path", "required": true,
                       "description": description, "schema": {"type": "string"}})
            })
            .collect();
        parameters.extend(
            PARAMETERS
                .iter()
                .filter(|(m, p, ..)| m == method && p == path)
                .map(|(_, _, name, kind, description)| {
                    json!({"name": name, "in": "query", "required": false,
                           "description": description, "schema": {"type": kind}})
                }),
        );
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "AnyFS workspace service", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "`{\"error\": {\"kind\", \"message\", \"path\"}}`, for every error, \
                        those of request parsing included (a body that is not JSON: 400 or 422; \
                        a wrong content type: 415; a body over the limit: 413). 503 \
                        `AuditUnavailable` (with `Retry-After`): audit records cannot be written \
                        to the store its message names, nothing was done; 503 `Unavailable` (with \
                        `Retry-After`): a store the service depends on (its message names which) \
                        cannot be reached now, nothing was done",
                    "content": {"application/json": {"schema": {"type": "object"}}}
                }
            }
        }
    })
}
