//! MCP: the workspace's files as tools, over two transports with one set
//! of tools ([`tools`]).
//!
//! - **Streamable HTTP** at the service's `/mcp`: every call is
//!   authenticated by the bearer secret on its own HTTP request (never by
//!   anything in the MCP session or the arguments) and runs through the
//!   same path as the HTTP API ([`run_audited`]): the caller's policy
//!   stack, the account's tree lock, the audit.
//! - **Standard input/output** ([`serve_stdio`], `anyfs mcp`): one local
//!   workspace with whatever middleware the command line asked for.
//!
//! On both, the roots a client declares narrow what the tools reach (a
//! path filter on top of everything else); they never widen it.

mod tools;

pub(crate) use tools::remove_node;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyfs::{FileStorage, FsFuse, Layer, PathFilterLayer};
use parking_lot::RwLock;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    CallToolResult, ContentBlock, ResourceContents, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Service;
use crate::caller::bearer;
use crate::failure::Failure;
use crate::operation::{Access, Callers, FileRequest, OpenWorkspace, Target, run_audited};
use crate::workspace::Stack;
use tools::*;

/// The MCP endpoint as a tower service, for the router to mount at `/mcp`.
///
/// Any `Host` is served: the transport's default check (loopback names
/// only, against DNS rebinding of unauthenticated local servers) would
/// refuse every client of a service reached by its own name, and here
/// every call needs a bearer secret that a rebinding page never has.
pub(crate) fn http_service(
    service: Arc<Service>,
) -> StreamableHttpService<FileTools, LocalSessionManager> {
    StreamableHttpService::new(
        move || Ok(FileTools::for_service(service.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().disable_allowed_hosts(),
    )
}

/// How `anyfs mcp` serves a local workspace over standard input/output.
#[derive(Debug, Clone, Default)]
pub struct StdioOptions {
    /// What the workspace is, for the server's instructions and log lines
    /// (its file name, say).
    pub label: String,
    /// The host directory the workspace overlays, if it is an overlay:
    /// a client root inside it names the same place in the workspace.
    pub over: Option<PathBuf>,
    /// Take no notice of the roots the client declares.
    pub ignore_roots: bool,
    /// Whether every change is refused (said in the instructions; the
    /// stack itself refuses).
    pub read_only: bool,
}

/// Serves the MCP tools over `files` on standard input and output until
/// the client closes its end. Nothing but protocol messages is written to
/// standard output.
pub async fn serve_stdio(
    files: Box<dyn FsFuse>,
    options: StdioOptions,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let local = Local {
        files: FileStorage::new(Arc::from(files)),
        tree: RwLock::new(()),
        options,
    };
    let server = FileTools::new(Host::Local(Arc::new(local)));
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

/// A local workspace served over standard input/output.
struct Local {
    files: FileStorage<Stack>,
    /// Taken as the service takes an account's (see [`Access`]): a move or
    /// a folder's removal runs alone, so that no change is judged against
    /// a tree that moves under it.
    tree: RwLock<()>,
    options: StdioOptions,
}

/// Whose files the tools work on.
#[derive(Clone)]
enum Host {
    /// The service's: the bearer secret of each call says whose.
    Service(Arc<Service>),
    /// One local workspace.
    Local(Arc<Local>),
}

/// What the client's roots allow, once asked.
#[derive(Default)]
struct Roots {
    /// `None` until asked (and again after the client says they changed).
    known: Option<Narrowed>,
}

/// The client's roots as workspace paths, and the filter that keeps the
/// tools inside them.
#[derive(Clone)]
struct Narrowed {
    paths: Vec<String>,
    /// Roots that name nothing in the workspace (outside an overlaid
    /// directory, or not `file:` URIs): they allow nothing.
    unusable: Vec<String>,
    filter: PathFilterLayer,
}

/// One session's tools: a server per MCP session.
#[derive(Clone)]
pub(crate) struct FileTools {
    host: Host,
    roots: Arc<tokio::sync::Mutex<Roots>>,
    tool_router: ToolRouter<Self>,
}

/// A tool call as the host runs it.
struct Call {
    tool: &'static str,
    access: Access,
    callers: Callers,
    /// The workspace paths it names (audited, and checked against the
    /// client's roots).
    paths: Vec<String>,
}

impl Call {
    fn new(tool: &'static str, access: Access, paths: &[&str]) -> Self {
        Call {
            tool,
            access,
            callers: Callers::AccountOrAgent,
            paths: paths
                .iter()
                .map(|p| ws_path(p).unwrap_or_else(|_| (*p).to_string()))
                .collect(),
        }
    }
}

/// The words a client is shown for a failure.
fn said(failure: Failure, call: &Call) -> String {
    match failure {
        Failure::Forbidden(_) if call.callers == Callers::AccountOnly => {
            "the snapshot tools take the account's own secret, not an agent token".into()
        }
        Failure::Unauthorized | Failure::Forbidden(_) => {
            "a valid account secret or agent token is required".into()
        }
        failure => failure.message(),
    }
}

/// The bearer secret of the HTTP request that carried this call.
fn secret_of(context: &RequestContext<RoleServer>) -> Option<Zeroizing<String>> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.headers.get(axum::http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(|s| Zeroizing::new(s.to_string()))
}

/// `files` seen through `filter`.
fn narrowed(files: FileStorage<Stack>, filter: Option<&PathFilterLayer>) -> FileStorage<Stack> {
    match filter {
        None => files,
        Some(filter) => {
            let stack: Stack = Arc::new(filter.layer(files.into_inner()));
            FileStorage::new(stack)
        }
    }
}

/// A `file:` URI's path, percent-decoded.
fn uri_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file:///x` or `file://localhost/x`; another host is not ours.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(rest).collect();
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A root as a workspace path: with an overlaid directory, a root inside
/// it names the same place in the workspace (one outside names nothing);
/// otherwise a root's path is a workspace path.
fn root_in_workspace(uri: &str, over: Option<&Path>) -> Option<String> {
    let path = uri_path(uri)?;
    let inside = match over {
        // The same place however the client spells it (a link on the way).
        Some(dir) if path.canonicalize().is_ok() => {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            path.canonicalize()
                .ok()?
                .strip_prefix(&dir)
                .ok()?
                .to_path_buf()
        }
        Some(dir) => {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            path.strip_prefix(&dir).ok()?.to_path_buf()
        }
        None => path.strip_prefix("/").ok()?.to_path_buf(),
    };
    let text = inside.to_str()?;
    let normal = anyfs::path::normalize(Path::new(&format!("/{text}")));
    if normal
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return None;
    }
    Some(normal.to_string_lossy().into_owned())
}

/// The filter that allows the roots and what is below them.
fn roots_filter(paths: &[String]) -> Result<PathFilterLayer, String> {
    let mut builder = PathFilterLayer::builder();
    for path in paths {
        if path == "/" {
            builder = builder.allow("/**");
        } else {
            builder = builder.allow(format!("{}/**", globset::escape(path)));
        }
    }
    builder.build().map_err(|e| e.to_string())
}

impl FileTools {
    fn new(host: Host) -> Self {
        let mut tool_router = Self::tool_router();
        let exec = matches!(&host, Host::Service(s) if s.config.exec.is_some());
        if !exec {
            tool_router.remove_route("run_command");
        }
        if matches!(host, Host::Local(_)) {
            for name in [
                "create_snapshot",
                "list_snapshots",
                "diff",
                "restore_snapshot",
            ] {
                tool_router.remove_route(name);
            }
        }
        Self {
            host,
            roots: Arc::default(),
            tool_router,
        }
    }

    pub(crate) fn for_service(service: Arc<Service>) -> Self {
        Self::new(Host::Service(service))
    }

    /// The client's roots, asked for once (and again after it says they
    /// changed); `None` when the client has none to give (or they are
    /// ignored). Roots are deprecated from protocol revision 2026-07-28 on,
    /// but clients of the revisions before it send them, and a root a
    /// user chose is a narrowing worth keeping.
    #[allow(deprecated)]
    async fn narrowing(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<Option<Narrowed>, String> {
        if let Host::Local(local) = &self.host
            && local.options.ignore_roots
        {
            return Ok(None);
        }
        let declares = context
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.roots.is_some());
        if !declares {
            return Ok(None);
        }
        let mut roots = self.roots.lock().await;
        if let Some(known) = &roots.known {
            return Ok(Some(known.clone()));
        }
        let listed = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            context.peer.list_roots(),
        )
        .await
        .map_err(|_| {
            "the client declares roots but did not list them within 10 s; nothing is reachable \
             until it does"
                .to_string()
        })?
        .map_err(|e| format!("the client's roots could not be read ({e}); nothing is reachable"))?;
        let over = match &self.host {
            Host::Local(local) => local.options.over.clone(),
            Host::Service(_) => None,
        };
        let mut paths = Vec::new();
        let mut unusable = Vec::new();
        for root in &listed.roots {
            match root_in_workspace(&root.uri, over.as_deref()) {
                Some(path) => paths.push(path),
                None => unusable.push(root.uri.clone()),
            }
        }
        let filter = roots_filter(&paths)?;
        let known = Narrowed {
            paths,
            unusable,
            filter,
        };
        roots.known = Some(known.clone());
        Ok(Some(known))
    }

    /// Runs `work` on the caller's files, as `call` says: authenticated,
    /// under the caller's policy and the client's roots, with the lock its
    /// access needs, audited.
    async fn files<T: Send + 'static>(
        &self,
        context: &RequestContext<RoleServer>,
        call: Call,
        work: impl FnOnce(&Files) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, String> {
        let narrowing = self.narrowing(context).await?;
        if let Some(roots) = &narrowing {
            for path in &call.paths {
                if !roots
                    .filter
                    .is_allowed(&anyfs::path::normalize(Path::new(path)))
                {
                    return Err(format!(
                        "{path}: outside the roots this client gave ({}); the client's roots \
                         only narrow what the tools reach",
                        if roots.paths.is_empty() {
                            "none that name a place in this workspace".to_string()
                        } else {
                            roots.paths.join(", ")
                        }
                    ));
                }
            }
        }
        let filter = narrowing.map(|n| n.filter);
        match &self.host {
            Host::Service(service) => {
                let request = FileRequest {
                    secret: secret_of(context),
                    target: Target::Own,
                    callers: call.callers,
                    access: call.access,
                    audits: call
                        .paths
                        .iter()
                        .map(|p| (format!("mcp {}", call.tool), p.clone()))
                        .collect(),
                };
                run_audited(service, request, move |ws: &OpenWorkspace| {
                    work(&narrowed(ws.files(), filter.as_ref()))
                })
                .await
                .map_err(|f| said(f, &call))
            }
            Host::Local(local) => {
                let local = local.clone();
                let access = call.access;
                tokio::task::spawn_blocking(move || {
                    let files = narrowed(local.files.clone(), filter.as_ref());
                    match access {
                        Access::WholeTree => {
                            let _alone = local.tree.write();
                            work(&files)
                        }
                        Access::Change | Access::InSteps => {
                            let _shared = local.tree.read();
                            work(&files)
                        }
                        Access::Read => work(&files),
                    }
                })
                .await
                .map_err(|e| format!("the tool failed: {e}"))?
                .map_err(|f| said(f, &call))
            }
        }
    }

    /// Runs `work` on the account's snapshots (the account's secret only).
    async fn trees<T: Send + 'static>(
        &self,
        context: &RequestContext<RoleServer>,
        call: Call,
        work: impl FnOnce(&OpenWorkspace) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, String> {
        let Host::Service(service) = &self.host else {
            return Err("snapshots are not served here".into());
        };
        if self.narrowing(context).await?.is_some() {
            return Err(NARROWED.into());
        }
        let request = FileRequest {
            secret: secret_of(context),
            target: Target::Own,
            callers: Callers::AccountOnly,
            access: call.access,
            audits: call
                .paths
                .iter()
                .map(|p| (format!("mcp {}", call.tool), p.clone()))
                .collect(),
        };
        let call = Call {
            callers: Callers::AccountOnly,
            ..call
        };
        run_audited(service, request, work)
            .await
            .map_err(|f| said(f, &call))
    }
}

/// A result that is data: the value as structured output, and as text the
/// words the reference server gives for it (so a client that reads only
/// the text reads what it is used to).
fn data<T: serde::Serialize>(value: &T, text: String) -> Result<CallToolResult, String> {
    let value = serde_json::to_value(value).map_err(|e| format!("the result: {e}"))?;
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(text)];
    Ok(result)
}

/// The output schema of a tool whose result is `T`.
fn output<T: schemars::JsonSchema + 'static>() -> Arc<rmcp::model::JsonObject> {
    rmcp::handler::server::tool::schema_for_output::<T>()
}

/// Why a tool that reaches the whole workspace is refused in a session
/// the client's roots narrow.
const NARROWED: &str = "this tool reaches the whole workspace, and this client's roots narrow \
                        what it may reach: it is not available in this session";

/// Changes a `diff` call lists at most (a tool result is held whole).
const MOST_CHANGES: usize = 1000;

#[tool_router]
impl FileTools {
    #[tool(
        description = "Read a text file of the workspace. Give `head` or `tail` for only the \
                       first or last N lines. At most 256 KiB is returned per call; a note at the \
                       end says how to read on (`offset`, `length` in bytes).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_text_file(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<ReadTextArgs>,
    ) -> Result<String, String> {
        let call = Call::new("read_text_file", Access::Read, &[&args.path]);
        self.files(&context, call, move |fs| read_text_file(fs, &args))
            .await
    }

    #[tool(
        description = "The same as read_text_file (kept for clients that use the older name).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_file(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<ReadTextArgs>,
    ) -> Result<String, String> {
        let call = Call::new("read_file", Access::Read, &[&args.path]);
        self.files(&context, call, move |fs| read_text_file(fs, &args))
            .await
    }

    #[tool(
        description = "Read an image, audio or any other file as base64 with its MIME type \
                       (from its name); at most 8 MiB.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_media_file(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<PathArgs>,
    ) -> Result<CallToolResult, String> {
        let call = Call::new("read_media_file", Access::Read, &[&args.path]);
        let path = ws_path(&args.path).map_err(|f| f.message())?;
        let (data, mime) = self
            .files(&context, call, move |fs| read_media_file(fs, &args))
            .await?;
        let block = if mime.starts_with("image/") {
            ContentBlock::image(data, mime)
        } else if mime.starts_with("audio/") {
            ContentBlock::audio(data, mime)
        } else {
            let uri = format!("file://{path}");
            ContentBlock::resource(ResourceContents::blob(data, uri).with_mime_type(mime))
        };
        Ok(CallToolResult::success(vec![block]))
    }

    #[tool(
        description = "Read several text files in one call: each under a `path:` line, \
                       separated by `---`. A file that cannot be read shows its error in its \
                       place; the others are still read. At most 256 KiB in all.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_multiple_files(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<ReadMultipleArgs>,
    ) -> Result<String, String> {
        let paths: Vec<&str> = args.paths.iter().map(String::as_str).collect();
        let mut call = Call::new("read_multiple_files", Access::Read, &paths);
        // One path outside the roots is reported in its place, not for all.
        call.paths.clear();
        let narrowing = self.narrowing(&context).await?;
        let outside: Vec<String> = match &narrowing {
            Some(roots) => args
                .paths
                .iter()
                .filter(|p| {
                    ws_path(p).ok().is_some_and(|p| {
                        !roots
                            .filter
                            .is_allowed(&anyfs::path::normalize(Path::new(&p)))
                    })
                })
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        call.paths = args
            .paths
            .iter()
            .filter(|p| !outside.contains(p))
            .filter_map(|p| ws_path(p).ok())
            .collect();
        self.files(&context, call, move |fs| {
            let mut args = args;
            args.paths.retain(|p| !outside.contains(p));
            let mut text = read_multiple_files(fs, &args);
            for path in outside {
                text.push_str(&format!(
                    "\n---\n{path}: Error - outside the roots this client gave"
                ));
            }
            Ok(text)
        })
        .await
    }

    #[tool(
        description = "Create a file or replace its whole content (UTF-8 text); its folders are \
                       made if missing. A replacement is atomic: the old content or the new, \
                       never a mix.",
        annotations(
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn write_file(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<WriteArgs>,
    ) -> Result<String, String> {
        let call = Call::new("write_file", Access::Change, &[&args.path]);
        self.files(&context, call, move |fs| write_file(fs, &args))
            .await
    }

    #[tool(
        description = "Replace text in a file: each edit's `oldText` is found exactly, or else \
                       line by line ignoring indentation, and replaced by `newText` (re-indented \
                       to where it was found). Edits apply in order, each to the result of the \
                       ones before; if one is not found nothing is written. Answers with a \
                       unified diff; `dryRun` shows it without writing.",
        annotations(
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn edit_file(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<EditArgs>,
    ) -> Result<String, String> {
        let access = if args.dry_run {
            Access::Read
        } else {
            Access::Change
        };
        let call = Call::new("edit_file", access, &[&args.path]);
        self.files(&context, call, move |fs| edit_file(fs, &args))
            .await
    }

    #[tool(
        description = "Create a directory and any missing parents; one that exists already is \
                       fine.",
        annotations(
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn create_directory(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<PathArgs>,
    ) -> Result<String, String> {
        let call = Call::new("create_directory", Access::Change, &[&args.path]);
        self.files(&context, call, move |fs| create_directory(fs, &args))
            .await
    }

    #[tool(
        description = "List a directory: one entry per line, `[DIR] name` or `[FILE] name`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_directory(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<PathArgs>,
    ) -> Result<String, String> {
        let call = Call::new("list_directory", Access::Read, &[&args.path]);
        self.files(&context, call, move |fs| list_directory(fs, &args))
            .await
    }

    #[tool(
        description = "List a directory with each file's size, sorted by `name` or `size`, \
                       and the totals.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_directory_with_sizes(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<ListSizesArgs>,
    ) -> Result<String, String> {
        let call = Call::new("list_directory_with_sizes", Access::Read, &[&args.path]);
        self.files(&context, call, move |fs| {
            list_directory_with_sizes(fs, &args)
        })
        .await
    }

    #[tool(
        description = "Everything below a directory as a JSON tree of {name, type, children}; \
                       `excludePatterns` leaves out matching names or paths. At most 5,000 \
                       entries.",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = output::<TreeResult>()
    )]
    async fn directory_tree(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<TreeArgs>,
    ) -> Result<CallToolResult, String> {
        let call = Call::new("directory_tree", Access::Read, &[&args.path]);
        let tree = self
            .files(&context, call, move |fs| directory_tree(fs, &args))
            .await?;
        let mut text = serde_json::to_string_pretty(&tree.tree).unwrap_or_default();
        if let Some(note) = &tree.note {
            text.push_str(&format!("\n[{note}]"));
        }
        data(&tree, text)
    }

    #[tool(
        description = "Move or rename a file or directory. Refuses to replace anything at the \
                       destination.",
        annotations(
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn move_file(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<FromToArgs>,
    ) -> Result<String, String> {
        let call = Call::new(
            "move_file",
            Access::WholeTree,
            &[&args.source, &args.destination],
        );
        self.files(&context, call, move |fs| move_file(fs, &args))
            .await
    }

    #[tool(
        description = "Find files and directories below `path` whose name (or, for a pattern \
                       with `/`, path below `path`) matches a glob such as `*.rs` or \
                       `src/**/test_*.py`. At most 1,000 results.",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = output::<SearchResult>()
    )]
    async fn search_files(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, String> {
        let call = Call::new("search_files", Access::Read, &[&args.path]);
        let found = self
            .files(&context, call, move |fs| search_files(fs, &args))
            .await?;
        let mut text = if found.matches.is_empty() {
            "No matches found".to_string()
        } else {
            found.matches.join("\n")
        };
        if found.truncated {
            text.push_str("\n[more matches not shown: narrow the pattern or the directory]");
        }
        data(&found, text)
    }

    #[tool(
        description = "Type, size, times and permissions of a path (a link is described, not \
                       followed).",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = output::<FileInfo>()
    )]
    async fn get_file_info(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<PathArgs>,
    ) -> Result<CallToolResult, String> {
        let call = Call::new("get_file_info", Access::Read, &[&args.path]);
        let info = self
            .files(&context, call, move |fs| get_file_info(fs, &args))
            .await?;
        let text = format!(
            "type: {}\nsize: {}\ncreated: {}\nmodified: {}\naccessed: {}\nisDirectory: {}\n\
             isFile: {}\npermissions: {}",
            info.kind,
            info.size,
            info.created,
            info.modified,
            info.accessed,
            info.is_directory,
            info.is_file,
            info.permissions
        );
        data(&info, text)
    }

    #[tool(
        description = "The directories these tools can reach: the workspace's root, or the \
                       roots this client gave.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_allowed_directories(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<String, String> {
        // Only for a caller with files (over HTTP: a valid secret).
        let call = Call::new("list_allowed_directories", Access::Read, &[]);
        self.files(&context, call, |_| Ok(())).await?;
        let narrowing = self.narrowing(&context).await?;
        let mut text = String::from("Allowed directories:\n");
        match narrowing {
            None => text.push('/'),
            Some(roots) => {
                text.push_str(&roots.paths.join("\n"));
                if !roots.unusable.is_empty() {
                    text.push_str(&format!(
                        "\n(roots that name nothing in this workspace, so allow nothing: {})",
                        roots.unusable.join(", ")
                    ));
                }
            }
        }
        Ok(text)
    }

    #[tool(
        description = "Delete a file or link, an empty directory, or with `recursive` a \
                       directory and everything in it.",
        annotations(
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn delete(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<DeleteArgs>,
    ) -> Result<String, String> {
        let call = Call::new("delete", Access::WholeTree, &[&args.path]);
        self.files(&context, call, move |fs| delete(fs, &args))
            .await
    }

    #[tool(
        description = "Copy a file or link, or with `recursive` a directory and everything in \
                       it. Refuses to replace anything at the destination.",
        annotations(
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn copy(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<FromToArgs>,
    ) -> Result<String, String> {
        let call = Call::new(
            "copy",
            Access::WholeTree,
            &[&args.source, &args.destination],
        );
        self.files(&context, call, move |fs| copy(fs, &args)).await
    }

    #[tool(
        description = "Search file contents for a regular expression: the matching lines with \
                       their paths and line numbers (default 100, at most 500; lines cut at \
                       300 bytes). Binary files and files over 16 MiB are skipped and named.",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = output::<GrepResult>()
    )]
    async fn grep(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<GrepArgs>,
    ) -> Result<CallToolResult, String> {
        let path = args.path.clone().unwrap_or_else(|| "/".into());
        let call = Call::new("grep", Access::Read, &[&path]);
        let found = self
            .files(&context, call, move |fs| grep(fs, &args))
            .await?;
        let mut lines: Vec<String> = found
            .matches
            .iter()
            .map(|m| format!("{}:{}: {}", m.path, m.line, m.text))
            .collect();
        if lines.is_empty() {
            lines.push("No matches found".into());
        }
        if found.truncated {
            lines.push("[more matches not shown: raise maxResults or narrow the search]".into());
        }
        for skipped in &found.skipped {
            lines.push(format!("[skipped {skipped}]"));
        }
        data(&found, lines.join("\n"))
    }

    #[tool(
        description = "Take a snapshot of the workspace (account secret only): one moment to \
                       compare with or go back to.",
        annotations(
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_snapshot(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<SnapshotArgs>,
    ) -> Result<String, String> {
        let call = Call::new("create_snapshot", Access::Change, &["/"]);
        self.trees(&context, call, move |ws| {
            crate::api::room_for(
                ws,
                |t| Ok(t.snapshots()?.len()),
                crate::api::Most::Snapshots,
            )?;
            let name = args.name.unwrap_or_default();
            let info = ws.with_trees(|t| t.create_snapshot(&name))?;
            Ok(format!("snapshot {} taken ({} bytes)", info.id, info.bytes))
        })
        .await
    }

    #[tool(
        description = "The workspace's snapshots: id, name, when, bytes (account secret only).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_snapshots(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<SnapshotList>, String> {
        let call = Call::new("list_snapshots", Access::Read, &["/"]);
        self.trees(&context, call, move |ws| {
            Ok(snapshot_items(&ws.with_trees(|t| t.snapshots())?))
        })
        .await
        .map(Json)
    }

    #[tool(
        description = "What changed from one tree to another (account secret only): one line \
                       per added, deleted or modified path, at most 1000. Trees are `live`, \
                       `snapshot:ID` or `branch:ID`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn diff(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<DiffArgs>,
    ) -> Result<String, String> {
        let call = Call::new("diff", Access::Read, &["/"]);
        self.trees(&context, call, move |ws| {
            let tree = |key: &str, raw: &str| -> Result<anyfs::snapshots::TreeRef, Failure> {
                raw.parse().map_err(|_| {
                    Failure::BadRequest(format!(
                        "`{key}`: {raw:?} is not `live`, `snapshot:ID` or `branch:ID`"
                    ))
                })
            };
            let from = tree("from", &args.from)?;
            let to = tree("to", args.to.as_deref().unwrap_or("live"))?;
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
            Ok(if lines.is_empty() {
                "no changes".to_string()
            } else {
                lines.join("\n")
            })
        })
        .await
    }

    #[tool(
        description = "Make the whole workspace what a snapshot holds: every change since is \
                       lost (account secret only).",
        annotations(
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn restore_snapshot(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<RestoreArgs>,
    ) -> Result<String, String> {
        let at = format!("/.snapshot/{}", args.snapshot);
        let call = Call::new("restore_snapshot", Access::WholeTree, &[&at]);
        self.trees(&context, call, move |ws| {
            let id: anyfs::snapshots::SnapshotId = args
                .snapshot
                .parse()
                .map_err(|e: anyfs::FsError| Failure::BadRequest(e.to_string()))?;
            ws.with_trees(|t| t.restore(id))?;
            Ok(format!("the workspace is snapshot {id} again"))
        })
        .await
    }

    #[tool(
        description = "Run a command in the workspace, in a sandbox: the workspace is the \
                       working directory and home (/workspace), the system's programs are there \
                       read-only, nothing else of the server is, and (unless the service allows \
                       it) there is no network. Give `command` (run by sh -c) or `argv`; \
                       answers with the exit code, standard output and standard error (each cut \
                       at the service's limit) once it has ended.",
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn run_command(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<RunArgs>,
    ) -> Result<String, String> {
        let Host::Service(service) = &self.host else {
            return Err("commands are not run here".into());
        };
        if self.narrowing(&context).await?.is_some() {
            return Err(NARROWED.into());
        }
        let argv = match (args.command, args.argv) {
            (Some(line), None) => vec!["sh".to_string(), "-c".to_string(), line],
            (None, Some(argv)) => argv,
            _ => {
                return Err(
                    "give `command` (a string) or `argv` (an array), one of them".to_string(),
                );
            }
        };
        let mut request = serde_json::Map::new();
        request.insert("argv".into(), json!(argv));
        if let Some(stdin) = args.stdin {
            request.insert("stdin".into(), Value::String(stdin));
        }
        if let Some(env) = args.env {
            request.insert("env".into(), json!(env));
        }
        if let Some(t) = args.timeout_s {
            request.insert("timeout_s".into(), json!(t));
        }
        let call = Call::new("run_command", Access::Change, &[]);
        let request = crate::exec::ExecRequest::from_json(&Value::Object(request))
            .map_err(|f| said(f, &call))?;
        let answer = crate::exec::run(service, secret_of(&context), request, "mcp")
            .await
            .map_err(|f| said(f, &call))?;
        Ok(serde_json::to_string_pretty(&answer).unwrap_or_default())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FileTools {
    fn get_info(&self) -> ServerConfig {
        let instructions = match &self.host {
            Host::Service(_) => "Files of your AnyFS workspace. Send your agent token as \
                                 `Authorization: Bearer` on every request."
                .to_string(),
            Host::Local(local) => format!(
                "Files of the AnyFS workspace {}{}. Paths start at / (the workspace's root).",
                local.options.label,
                if local.options.read_only {
                    " (read-only)"
                } else {
                    ""
                }
            ),
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new(
                "anyfs",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(instructions)
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        self.roots.lock().await.known = None;
    }
}
