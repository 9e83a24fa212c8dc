//! MCP tools for agents, at `/mcp` (Streamable HTTP): the files API as
//! tools. Every tool call is authenticated by the bearer secret on that HTTP
//! request — never by anything in the MCP session or the arguments — and
//! runs through the caller's own middleware stack, audited like the HTTP API.

use std::sync::Arc;

use anyfs::FileStorage;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::Service;
use crate::caller::bearer;
use crate::failure::Failure;
use crate::operation::{Access, Callers, FileRequest, OpenWorkspace, Target, run_audited};

/// The MCP endpoint as a tower service, for the router to mount at `/mcp`.
///
/// Any `Host` is served: the transport's default check (loopback names
/// only, against DNS rebinding of unauthenticated local servers) would
/// refuse every client of a service reached by its own name, and here
/// every call needs a bearer secret that a rebinding page never has.
pub(crate) fn http_service(
    service: Arc<Service>,
) -> StreamableHttpService<McpFiles, LocalSessionManager> {
    StreamableHttpService::new(
        move || {
            Ok(McpFiles {
                service: service.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().disable_allowed_hosts(),
    )
}

/// The MCP server: one per session, sharing the service.
#[derive(Clone)]
pub(crate) struct McpFiles {
    pub(crate) service: Arc<Service>,
}

fn schema(properties: Value, required: &[&str]) -> Arc<Map<String, Value>> {
    let value = json!({"type": "object", "properties": properties, "required": required});
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(Map::new()),
    }
}

fn tool(name: &'static str, description: &'static str, input: Arc<Map<String, Value>>) -> Tool {
    Tool::new(name, description, input)
}

fn tools() -> Vec<Tool> {
    let path = json!({"path": {"type": "string", "description": "a path in the workspace, like /src/main.rs"}});
    let reads = || ToolAnnotations::new().read_only(true);
    let tree = json!({"type": "string", "description": "`live`, `snapshot:ID` or `branch:ID`"});
    vec![
        tool(
            "read_file",
            "Read a text file of the workspace: at most 1 MiB per call; give `offset` \
             (and `length`) to read further into a larger file",
            schema(
                json!({
                    "path": path["path"],
                    "offset": {"type": "integer", "minimum": 0, "description": "first byte to read (default 0)"},
                    "length": {"type": "integer", "minimum": 1, "description": "bytes to read (default and most: 1 MiB)"}
                }),
                &["path"],
            ),
        )
        .annotate(reads()),
        tool(
            "write_file",
            "Write a text file (its folders are made)",
            schema(
                json!({"path": path["path"], "content": {"type": "string"}}),
                &["path", "content"],
            ),
        ),
        tool(
            "list_dir",
            "List a directory",
            schema(path.clone(), &["path"]),
        )
        .annotate(reads()),
        tool(
            "stat",
            "Type, size and mode of a path",
            schema(path.clone(), &["path"]),
        )
        .annotate(reads()),
        tool(
            "make_dir",
            "Make a directory and its parents",
            schema(path.clone(), &["path"]),
        ),
        tool(
            "move",
            "Move or rename a file or directory",
            schema(
                json!({"from": {"type": "string"}, "to": {"type": "string"}}),
                &["from", "to"],
            ),
        ),
        tool(
            "delete",
            "Delete a file, or a directory (`recursive` for a whole tree)",
            schema(
                json!({"path": path["path"], "recursive": {"type": "boolean"}}),
                &["path"],
            ),
        )
        .annotate(ToolAnnotations::new().destructive(true)),
        tool(
            "create_snapshot",
            "Take a snapshot of the workspace (account secret only): one moment to compare \
             with or go back to",
            schema(json!({"name": {"type": "string"}}), &[]),
        )
        .annotate(ToolAnnotations::new().read_only(false).destructive(false)),
        tool(
            "list_snapshots",
            "The workspace's snapshots: id, name, when, bytes (account secret only)",
            schema(json!({}), &[]),
        )
        .annotate(reads()),
        tool(
            "diff",
            "What changed from one tree to another (account secret only): one line per \
             added, deleted or modified path, at most 1000",
            schema(json!({"from": tree, "to": tree}), &["from"]),
        )
        .annotate(reads()),
        tool(
            "restore_snapshot",
            "Make the whole workspace what a snapshot holds: every change since is lost \
             (account secret only)",
            schema(
                json!({"snapshot": {"type": "string", "description": "the snapshot's id"}}),
                &["snapshot"],
            ),
        )
        .annotate(ToolAnnotations::new().destructive(true).idempotent(true)),
        tool(
            "run_command",
            "Run a command in the workspace, in a sandbox: the workspace is the working \
             directory and home (/workspace), the system's programs are there read-only, \
             nothing else of the server is, and (unless the service allows it) there is no \
             network. Give `command` (run by \
             sh -c) or `argv`; answers with the exit code, standard output and standard \
             error (each cut at the service's limit) once it has ended",
            schema(
                json!({
                    "command": {"type": "string", "description": "a shell command line, like `python3 test.py | tail -5`"},
                    "argv": {"type": "array", "items": {"type": "string"}, "description": "the program and its arguments, instead of `command`"},
                    "stdin": {"type": "string", "description": "the command's standard input"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "environment variables to set"},
                    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "description": "end it after this many seconds (default and most: the service's)"}
                }),
                &[],
            ),
        )
        .annotate(ToolAnnotations::new().destructive(true).open_world(false)),
    ]
}

/// A `run_command` call: its arguments as `POST /v1/exec` takes them.
async fn run_command(
    service: &Arc<Service>,
    secret: Option<Zeroizing<String>>,
    mut args: Map<String, Value>,
) -> Result<String, Failure> {
    match args.remove("command") {
        Some(Value::String(line)) if !args.contains_key("argv") => {
            args.insert("argv".into(), json!(["sh", "-c", line]));
        }
        Some(_) => {
            return Err(Failure::BadRequest(
                "give `command` (a string) or `argv` (an array), not both".into(),
            ));
        }
        None => {}
    }
    let request = crate::exec::ExecRequest::from_json(&Value::Object(args))?;
    let answer = crate::exec::run(service, secret, request, "mcp").await?;
    Ok(serde_json::to_string_pretty(&answer).unwrap_or_default())
}

/// Tools on the account's snapshots, not its files: the account's secret
/// only.
fn is_tree_tool(name: &str) -> bool {
    matches!(
        name,
        "create_snapshot" | "list_snapshots" | "diff" | "restore_snapshot"
    )
}

/// Changes a `diff` call lists at most (a tool result is held whole).
const MOST_CHANGES: usize = 1000;

/// Runs one of the snapshot tools.
fn run_tree_tool(
    ws: &OpenWorkspace,
    name: &str,
    args: &Map<String, Value>,
) -> Result<String, Failure> {
    let text_arg = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or_default();
    let tree = |key: &str, default: &str| -> Result<anyfs::snapshots::TreeRef, Failure> {
        let raw = args.get(key).and_then(Value::as_str).unwrap_or(default);
        raw.parse().map_err(|_| {
            Failure::BadRequest(format!(
                "`{key}`: {raw:?} is not `live`, `snapshot:ID` or `branch:ID`"
            ))
        })
    };
    Ok(match name {
        "create_snapshot" => {
            crate::api::room_for(
                ws,
                |t| Ok(t.snapshots()?.len()),
                crate::api::Most::Snapshots,
            )?;
            let info = ws.with_trees(|t| t.create_snapshot(text_arg("name")))?;
            format!("snapshot {} taken ({} bytes)", info.id, info.bytes)
        }
        "list_snapshots" => {
            let list = ws.with_trees(|t| t.snapshots())?;
            let lines: Vec<String> = list
                .iter()
                .map(|s| {
                    let secs = s
                        .created
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    json!({"id": s.id.to_string(), "name": s.name, "created": secs, "bytes": s.bytes})
                        .to_string()
                })
                .collect();
            if lines.is_empty() {
                "no snapshots".to_string()
            } else {
                lines.join("\n")
            }
        }
        "diff" => {
            let (from, to) = (tree("from", "")?, tree("to", "live")?);
            let mut lines = Vec::new();
            let mut more = 0usize;
            ws.with_trees(|t| {
                t.diff(from, to, &mut |change| {
                    if lines.len() < MOST_CHANGES {
                        lines.push(format!("{} {}", change.kind(), change.path().display()));
                    } else {
                        more += 1;
                    }
                    Ok(true)
                })
            })?;
            if more > 0 {
                lines.push(format!("… and {more} more (GET /v1/diff lists them all)"));
            }
            if lines.is_empty() {
                "no changes".to_string()
            } else {
                lines.join("\n")
            }
        }
        "restore_snapshot" => {
            let id: anyfs::snapshots::SnapshotId = text_arg("snapshot")
                .parse()
                .map_err(|e: anyfs::FsError| Failure::BadRequest(e.to_string()))?;
            ws.with_trees(|t| t.restore(id))?;
            format!("the workspace is snapshot {id} again")
        }
        other => return Err(Failure::BadRequest(format!("no tool `{other}`"))),
    })
}

/// The workspace path in argument `name`.
fn arg(args: &Map<String, Value>, name: &str) -> Result<String, Failure> {
    args.get(name)
        .and_then(Value::as_str)
        .map(|s| format!("/{}", s.trim_start_matches('/')))
        .ok_or_else(|| Failure::BadRequest(format!("missing string argument `{name}`")))
}

/// The most a `read_file` call returns: a tool result is held whole in
/// memory (and in the model's context), so a large file is read in parts.
const READ_LIMIT: u64 = 1 << 20;

/// A part of a text file, at most [`READ_LIMIT`] bytes, with a note saying
/// how to read on when there is more.
fn read_text(
    fs: &FileStorage<crate::workspace::Stack>,
    path: &str,
    args: &Map<String, Value>,
) -> Result<String, Failure> {
    let number = |name: &str| match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            Failure::BadRequest(format!("`{name}` must be a whole number of bytes"))
        }),
    };
    let offset = number("offset")?.unwrap_or(0);
    // At least one whole character (UTF-8 takes up to 4 bytes).
    let length = number("length")?.unwrap_or(READ_LIMIT).clamp(4, READ_LIMIT);
    let size = fs.metadata(path)?.len;
    let mut bytes = fs.read_range(path, offset, length as usize)?;
    // A part may end inside a character: that character is left for the next.
    let text = match String::from_utf8(bytes.clone()) {
        Ok(text) => text,
        Err(e) if e.utf8_error().error_len().is_none() => {
            bytes.truncate(e.utf8_error().valid_up_to());
            String::from_utf8(bytes)
                .map_err(|_| Failure::BadRequest("the file is not UTF-8 text".into()))?
        }
        Err(_) => {
            return Err(Failure::BadRequest(
                "the file is not UTF-8 text; read it with the HTTP files API (GET /v1/files/…)"
                    .into(),
            ));
        }
    };
    let next = offset + text.len() as u64;
    if next < size {
        Ok(format!(
            "{text}\n\n[{path} has {size} bytes; this is bytes {offset} to {next}. Call read_file \
             with offset {next} for more.]"
        ))
    } else {
        Ok(text)
    }
}

/// Runs one tool on the caller's workspace.
fn run_tool(
    fs: &FileStorage<crate::workspace::Stack>,
    name: &str,
    args: &Map<String, Value>,
) -> Result<String, Failure> {
    match name {
        "read_file" => read_text(fs, &arg(args, "path")?, args),
        "write_file" => {
            let path = arg(args, "path")?;
            let content = args
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::BadRequest("missing string argument `content`".into()))?;
            if let Some((parent, _)) = anyfs::path::split_parent(std::path::Path::new(&path)) {
                fs.create_dir_all(&parent).map_err(|e| e.with_path(&path))?;
            }
            fs.write(&path, content)?;
            Ok(format!("wrote {} bytes to {path}", content.len()))
        }
        "list_dir" => {
            let mut names = Vec::new();
            for entry in fs.read_dir(arg(args, "path")?)? {
                let entry = entry?;
                let slash = if entry.file_type.is_dir() { "/" } else { "" };
                names.push(format!("{}{slash}", entry.name.to_string_lossy()));
            }
            names.sort();
            Ok(names.join("\n"))
        }
        "stat" => {
            let m = fs.metadata(arg(args, "path")?)?;
            let kind = if m.is_dir() { "dir" } else { "file" };
            Ok(
                json!({"type": kind, "size": m.len, "mode": format!("{:o}", m.permissions.mode())})
                    .to_string(),
            )
        }
        "make_dir" => {
            let path = arg(args, "path")?;
            fs.create_dir_all(&path)?;
            Ok(format!("made {path}"))
        }
        "move" => {
            let (from, to) = (arg(args, "from")?, arg(args, "to")?);
            fs.rename(&from, &to)?;
            Ok(format!("moved {from} to {to}"))
        }
        "delete" => {
            let path = arg(args, "path")?;
            let recursive = args
                .get("recursive")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let meta = fs.symlink_metadata(&path)?;
            if meta.is_dir() {
                if recursive {
                    fs.remove_dir_all(&path)
                } else {
                    fs.remove_dir(&path)
                }
            } else {
                fs.remove_file(&path)
            }?;
            Ok(format!("deleted {path}"))
        }
        other => Err(Failure::BadRequest(format!("no tool `{other}`"))),
    }
}

impl ServerHandler for McpFiles {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Files of your AnyFS workspace. Send your agent token as `Authorization: Bearer` on \
             every request.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = tools();
        if self.service.config.exec.is_none() {
            tools.retain(|t| t.name != "run_command");
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let secret = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get(axum::http::header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .map(|s| Zeroizing::new(s.to_string()));
        let name = request.name.to_string();
        let args = request.arguments.unwrap_or_default();
        let text = |text: String| vec![ContentBlock::text(text)];
        if name == "run_command" {
            return Ok(match run_command(&self.service, secret, args).await {
                Ok(done) => CallToolResult::success(text(done)),
                Err(Failure::Unauthorized) => CallToolResult::error(text(
                    "a valid account secret or agent token is required".into(),
                )),
                Err(failure) => CallToolResult::error(text(failure.message())),
            }
            .into());
        }
        let trees = is_tree_tool(&name);
        // Every path the call names is audited (a move's both); a snapshot
        // tool, the snapshot or the workspace.
        let audits = if trees {
            let at = match args.get("snapshot").and_then(Value::as_str) {
                Some(id) => format!("/.snapshot/{id}"),
                None => "/".to_string(),
            };
            vec![(format!("mcp {name}"), at)]
        } else {
            ["path", "from", "to"]
                .iter()
                .filter_map(|key| args.get(*key).and_then(Value::as_str))
                .map(|path| {
                    (
                        format!("mcp {name}"),
                        format!("/{}", path.trim_start_matches('/')),
                    )
                })
                .collect()
        };
        let request = FileRequest {
            secret,
            target: Target::Own,
            callers: if trees {
                Callers::AccountOnly
            } else {
                Callers::AccountOrAgent
            },
            access: access_of(&name),
            audits,
        };
        let outcome = run_audited(&self.service, request, move |ws| {
            if trees {
                run_tree_tool(ws, &name, &args)
            } else {
                run_tool(ws, &name, &args)
            }
        })
        .await;
        Ok(match outcome {
            Ok(done) => CallToolResult::success(text(done)),
            Err(Failure::Forbidden(_)) if trees => CallToolResult::error(text(
                "the snapshot tools take the account's own secret, not an agent token".into(),
            )),
            Err(Failure::Unauthorized | Failure::Forbidden(_)) => CallToolResult::error(text(
                "a valid account secret or agent token is required".into(),
            )),
            Err(failure) => CallToolResult::error(text(failure.message())),
        }
        .into())
    }
}

/// What a tool does to the account's files (as over HTTP: a call that may
/// take a whole folder runs alone in the account, every other change
/// shares).
fn access_of(tool: &str) -> Access {
    match tool {
        "move" | "delete" | "restore_snapshot" => Access::WholeTree,
        "write_file" | "make_dir" | "create_snapshot" => Access::Change,
        _ => Access::Read,
    }
}
