//! Commands run for callers (`POST /v1/exec`, the MCP tool `run_command`):
//! in the sandbox of `anyfs-sandbox`, over the caller's own workspace as
//! its policy shows it (an agent's denied paths are absent and its
//! read-only paths refuse changes inside the command too), under limits
//! per command and per account, audited with the command line, exit
//! status, duration and bytes out — never its environment or input.
//!
//! Off unless the operator asks for it ([`crate::Config::exec`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyfs::FsError;
use anyfs_sandbox::{
    Ended, Io, Limits, Network, Outcome, Sandbox, SandboxUser, Stopper, WorkspaceMount,
};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Service;
use crate::failure::Failure;
use crate::operation::{Access, Callers, FileRequest, Target, run_audited};
use crate::registry::Outcome as AuditOutcome;

/// What commands may use, set by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Commands an account (with all its agents) runs at once (default 2).
    pub max_concurrent: usize,
    /// Commands the whole service runs at once (default 16): each holds
    /// a thread of the pool every file operation runs on.
    pub max_total: usize,
    /// Data memory per process of a command (default 1 GiB).
    pub memory: u64,
    /// Processes and threads of a command at once (default 256).
    pub processes: u64,
    /// The longest a command may run, and its CPU time per process
    /// (default 300 s); a caller may ask for less.
    pub max_timeout: Duration,
    /// How long a command runs when the caller says nothing (default 60 s).
    pub default_timeout: Duration,
    /// Bytes kept of standard output, and again of standard error
    /// (default 1 MiB each).
    pub output: u64,
    /// Size of a command's private `/tmp` (default 256 MiB).
    pub tmp_size: u64,
    /// Give commands the host's network (default: none at all).
    pub network: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_total: 16,
            memory: 1 << 30,
            processes: 256,
            max_timeout: Duration::from_secs(300),
            default_timeout: Duration::from_secs(60),
            output: 1 << 20,
            tmp_size: 256 << 20,
            network: false,
        }
    }
}

/// Bytes of standard input a command may be given.
pub(crate) const MAX_STDIN: usize = 8 << 20;
/// Words of a command line, and bytes of each.
const MAX_ARGS: usize = 1024;
const MAX_ARG_BYTES: usize = 128 << 10;
/// Environment variables a caller may set.
const MAX_ENV: usize = 256;

/// The running commands of each account.
#[derive(Debug, Default)]
pub(crate) struct Executor {
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// One of an account's running commands, counted until dropped.
struct Slot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    account: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock();
        if let Some(n) = running.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.account);
            }
        }
    }
}

impl Executor {
    fn slot(&self, account: &str, most: usize, total: usize) -> Result<Slot, Failure> {
        let mut running = self.running.lock();
        if running.values().sum::<usize>() >= total {
            return Err(Failure::File {
                error: FsError::rate_limit_exceeded("/", Duration::from_secs(1)),
                explained: Some(format!(
                    "the service already runs as many commands as it allows at once \
                     ({total}): retry in a moment"
                )),
            });
        }
        let n = running.entry(account.to_string()).or_default();
        if *n >= most {
            return Err(Failure::File {
                error: FsError::rate_limit_exceeded("/", Duration::from_secs(1)),
                explained: Some(format!(
                    "this account already runs as many commands as this service allows at \
                     once ({most}): retry when one has ended"
                )),
            });
        }
        *n += 1;
        Ok(Slot {
            running: self.running.clone(),
            account: account.to_string(),
        })
    }
}

/// A command as a caller asks for it.
#[derive(Debug)]
pub(crate) struct ExecRequest {
    pub(crate) argv: Vec<String>,
    pub(crate) stdin: Zeroizing<Vec<u8>>,
    pub(crate) env: Vec<(String, Zeroizing<String>)>,
    pub(crate) timeout: Option<Duration>,
}

impl ExecRequest {
    /// From `{"argv": [...], "stdin": "...", "env": {...}, "timeout_s": N}`.
    pub(crate) fn from_json(body: &Value) -> Result<Self, Failure> {
        let bad = |why: &str| Failure::BadRequest(why.to_string());
        let Value::Object(fields) = body else {
            return Err(bad(
                "the body is a JSON object: {\"argv\": [\"command\", \"arg\", ...]}",
            ));
        };
        for name in fields.keys() {
            if !["argv", "stdin", "env", "timeout_s"].contains(&name.as_str()) {
                return Err(Failure::BadRequest(format!(
                    "unknown field `{name}` (the fields are argv, stdin, env and timeout_s)"
                )));
            }
        }
        let argv: Vec<String> = match fields.get("argv") {
            Some(Value::Array(words)) => words
                .iter()
                .map(|w| w.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("`argv` holds strings only"))?,
            _ => {
                return Err(bad(
                    "`argv` is required: the command and its arguments, as strings",
                ));
            }
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(bad("`argv` names a command: it may not be empty"));
        }
        if argv.len() > MAX_ARGS || argv.iter().any(|w| w.len() > MAX_ARG_BYTES) {
            return Err(Failure::BadRequest(format!(
                "`argv` holds at most {MAX_ARGS} words of at most {MAX_ARG_BYTES} bytes"
            )));
        }
        if argv.iter().any(|w| w.contains('\0')) {
            return Err(bad("`argv` may not hold NUL characters"));
        }
        let stdin = match fields.get("stdin") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s.len() <= MAX_STDIN => s.as_bytes().to_vec(),
            Some(Value::String(_)) => {
                return Err(Failure::BadRequest(format!(
                    "`stdin` holds at most {MAX_STDIN} bytes"
                )));
            }
            Some(_) => return Err(bad("`stdin` is a string")),
        };
        let env = match fields.get("env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(vars)) => {
                if vars.len() > MAX_ENV {
                    return Err(Failure::BadRequest(format!(
                        "`env` holds at most {MAX_ENV} variables"
                    )));
                }
                vars.iter()
                    .map(|(name, value)| {
                        let valid = !name.is_empty()
                            && !name.starts_with(|c: char| c.is_ascii_digit())
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        match value.as_str() {
                            Some(v) if valid && !v.contains('\0') => {
                                Ok((name.clone(), Zeroizing::new(v.to_string())))
                            }
                            Some(_) if !valid => Err(Failure::BadRequest(format!(
                                "`env`: `{name}` is not a variable name (letters, digits, _)"
                            ))),
                            _ => Err(Failure::BadRequest(format!(
                                "`env`: the value of `{name}` is a string without NUL characters"
                            ))),
                        }
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(bad("`env` is an object of strings")),
        };
        let timeout = match fields.get("timeout_s") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
                _ => return Err(bad("`timeout_s` is a positive number of seconds")),
            },
        };
        Ok(Self {
            argv,
            stdin: Zeroizing::new(stdin),
            env,
            timeout,
        })
    }
}

/// Stops a command when dropped before it ended: its caller went away.
#[derive(Default, Clone)]
pub(crate) struct StopOnDrop(Arc<Mutex<Option<Stopper>>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1 {
            return;
        }
        if let Some(stopper) = self.0.lock().take() {
            stopper.stop();
        }
    }
}

/// Runs `request` for whoever `secret` belongs to, in its workspace, and
/// answers with the outcome as JSON.
pub(crate) async fn run(
    service: &Arc<Service>,
    secret: Option<Zeroizing<String>>,
    request: ExecRequest,
    transport: &'static str,
) -> Result<Value, Failure> {
    let Some(config) = service.config.exec.clone() else {
        return Err(Failure::Forbidden(
            "running commands is off on this service (the operator starts it with \
             `anyfs serve --allow-exec`)",
        ));
    };
    let timeout = request
        .timeout
        .unwrap_or(config.default_timeout.min(config.max_timeout));
    if timeout > config.max_timeout {
        return Err(Failure::BadRequest(format!(
            "`timeout_s` is at most {} on this service",
            config.max_timeout.as_secs()
        )));
    }
    let file_request = FileRequest {
        secret,
        callers: Callers::AccountOrAgent,
        target: Target::Own,
        // Every file operation of the command goes through the caller's
        // stack, each judged by its policy there, and takes the account's
        // tree lock as an HTTP request would (`TreeLocked`).
        access: Access::InSteps,
        audits: Vec::new(),
    };
    // The handler's future is dropped when the client goes away; the
    // command is then stopped, with everything it started.
    let guard = StopOnDrop::default();
    let stopper = guard.clone();
    let result = run_audited(service, file_request, move |open| {
        let _slot = open.service().executor.slot(
            open.account(),
            config.max_concurrent,
            config.max_total,
        )?;
        let mut sandbox = Sandbox::new(SandboxUser::new())
            .network(if config.network {
                Network::Host
            } else {
                Network::None
            })
            .limits(Limits {
                memory: Some(config.memory),
                processes: Some(config.processes),
                cpu_time: Some(timeout),
                wall_time: Some(timeout),
                output: Some(config.output),
                tmp_size: config.tmp_size,
                ..Limits::default()
            });
        for (name, value) in &request.env {
            sandbox = sandbox.env(name.clone(), value.as_str());
        }
        // Recorded before anything runs: a command whose end is never
        // recorded (the service stopped) still shows.
        let line = command_line(&request.argv);
        open.record(
            "exec start",
            &json!({"transport": transport, "argv": line}).to_string(),
            AuditOutcome::Ok,
        )
        .map_err(|e| Failure::audit_unavailable(e, false))?;
        open.service().registry.flush_audit();
        open.service()
            .registry
            .audit_ready()
            .map_err(|e| Failure::audit_unavailable(e, false))?;
        let setup = |e: anyfs_sandbox::SandboxError| Failure::internal(format!("exec: {e}"));
        let mount = WorkspaceMount::mount(
            crate::tree_lock::TreeLocked::new(open.files().into_inner(), open.tree_lock()),
            &sandbox.user(),
            false,
        )
        .map_err(setup)?;
        let running = sandbox
            .spawn(
                &mount,
                &request.argv,
                Io::capture(request.stdin.to_vec(), config.output),
            )
            .map_err(setup)?;
        *stopper.0.lock() = Some(running.stopper());
        let outcome = running.wait();
        stopper.0.lock().take();
        mount.unmount().map_err(setup)?;
        let audit = json!({
            "transport": transport,
            "argv": line,
            "exit_code": outcome.code,
            "ended": ended_word(outcome.ended),
            "duration_ms": outcome.usage.wall.as_millis() as u64,
            "cpu_ms": outcome.usage.cpu.map(|d| d.as_millis() as u64),
            "stdout_bytes": outcome.stdout.total,
            "stderr_bytes": outcome.stderr.total,
        });
        let word = match outcome.code {
            0 => AuditOutcome::Ok,
            _ => AuditOutcome::Failed("CommandFailed"),
        };
        open.record("exec", &audit.to_string(), word)
            .map_err(|e| Failure::audit_unavailable(e, true))?;
        Ok::<_, Failure>(answer(&outcome, timeout))
    })
    .await;
    drop(guard);
    result
}

/// Bytes of a command line the audit keeps; a longer one is kept as its
/// start, its length and its SHA-256.
const AUDITED_ARGV: usize = 4096;

/// The command line as the audit records it.
fn command_line(argv: &[String]) -> Value {
    let whole: usize = argv.iter().map(|w| w.len() + 1).sum();
    if whole <= AUDITED_ARGV {
        return json!(argv);
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for word in argv {
        digest.update(word.as_bytes());
        digest.update(&[0]);
    }
    let mut start = argv.join(" ");
    let mut cut = AUDITED_ARGV;
    while !start.is_char_boundary(cut) {
        cut -= 1;
    }
    start.truncate(cut);
    let hex: String = digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({"start": start, "bytes": whole, "sha256": hex})
}

fn ended_word(ended: Option<Ended>) -> Option<&'static str> {
    ended.map(|e| match e {
        Ended::WallTime(_) => "timeout",
        Ended::CpuTime(_) => "cpu_time",
        Ended::Stopped => "stopped",
        Ended::Memory(_) => "memory",
    })
}

/// The outcome as the API answers it.
fn answer(outcome: &Outcome, timeout: Duration) -> Value {
    let stream = |name: &str, captured: &anyfs_sandbox::Captured| {
        let (text, encoding) = match std::str::from_utf8(&captured.bytes) {
            Ok(text) => (text.to_string(), "utf-8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&captured.bytes),
                "base64",
            ),
        };
        [
            (name.to_string(), json!(text)),
            (format!("{name}_encoding"), json!(encoding)),
            (format!("{name}_bytes"), json!(captured.total)),
            (format!("{name}_truncated"), json!(captured.truncated)),
        ]
    };
    let mut body = json!({
        "exit_code": outcome.code,
        "signal": outcome.signal(),
        "ended": ended_word(outcome.ended),
        "message": outcome.ended.map(|e| e.to_string()),
        "duration_ms": outcome.usage.wall.as_millis() as u64,
        "cpu_ms": outcome.usage.cpu.map(|d| d.as_millis() as u64),
        "memory_peak_bytes": outcome.usage.memory_peak,
        "timeout_s": timeout.as_secs_f64(),
    });
    if let Value::Object(fields) = &mut body {
        fields.extend(stream("stdout", &outcome.stdout));
        fields.extend(stream("stderr", &outcome.stderr));
    }
    body
}
