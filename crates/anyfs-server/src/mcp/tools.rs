//! What each MCP tool does to a workspace, whatever the transport: plain
//! functions over the caller's files, with the arguments and results as
//! typed structs (their JSON schemas are what `tools/list` shows).
//!
//! Names and arguments follow the reference filesystem server's tools, so
//! a client written for it works unchanged; `delete`, `copy` and `grep` are
//! ours. Every result is bounded: a tool's answer is held whole in memory
//! and in the model's context, so past a limit it is cut, with a note
//! saying so and how to get the rest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyfs::{FileStorage, FileType, FsError};
use base64::Engine;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::workspace::Stack;

/// The caller's files, through its whole stack.
pub(crate) type Files = FileStorage<Stack>;

/// The most text one result carries (a file read, several files). Clients
/// bound one message too (the MCP Python SDK takes at most 1 MiB per
/// server-sent event), and a structured result travels twice (as data and
/// as its text copy): every limit here keeps a whole answer well below.
pub(crate) const TEXT_LIMIT: usize = 256 << 10;
/// The largest file `read_media_file` returns (base64 makes it a third
/// larger).
pub(crate) const MEDIA_LIMIT: u64 = 8 << 20;
/// The most entries `directory_tree` and `list_directory` show.
pub(crate) const ENTRY_LIMIT: usize = 5_000;
/// The most paths `search_files` returns.
pub(crate) const SEARCH_LIMIT: usize = 1_000;
/// `grep`'s default and greatest number of matching lines.
pub(crate) const GREP_DEFAULT: usize = 100;
pub(crate) const GREP_LIMIT: usize = 500;
/// Files larger than this are not searched by `grep` (they are listed as
/// skipped).
pub(crate) const GREP_FILE_LIMIT: u64 = 16 << 20;
/// The most bytes one `grep` call reads in all.
pub(crate) const GREP_TOTAL: u64 = 256 << 20;
/// The longest line `grep` shows (longer ones are cut).
const GREP_LINE: usize = 300;
/// The most bytes of paths and names one listing result carries
/// (`directory_tree`, `search_files`, `grep`), whatever their count.
pub(crate) const RESULT_BYTES: usize = 256 << 10;
/// How deep `directory_tree` shows (deeper directories are shown without
/// their entries).
pub(crate) const TREE_DEPTH: usize = 64;
/// The longest one walk may take.
const WALK_TIME: std::time::Duration = std::time::Duration::from_secs(20);
/// The most entries one walk visits (`directory_tree`, `search_files`,
/// `grep`, `copy`), so that no call runs unbounded over a huge tree.
pub(crate) const WALK_LIMIT: usize = 200_000;

// ---------------------------------------------------------------- arguments

/// One path.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathArgs {
    /// A path in the workspace, like `/src/main.rs` (a relative path is
    /// taken from the workspace's root).
    pub(crate) path: String,
}

/// `read_text_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadTextArgs {
    /// The file, like `/src/main.rs`.
    pub(crate) path: String,
    /// Only the first N lines.
    #[schemars(range(min = 0))]
    pub(crate) head: Option<u64>,
    /// Only the last N lines.
    #[schemars(range(min = 0))]
    pub(crate) tail: Option<u64>,
    /// The first byte to read (default 0): for reading a large file in parts.
    pub(crate) offset: Option<u64>,
    /// How many bytes to read (default and most: 256 KiB).
    pub(crate) length: Option<u64>,
}

/// `read_multiple_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadMultipleArgs {
    /// The files to read; one that cannot be read is reported in its place
    /// and the others are still read.
    pub(crate) paths: Vec<String>,
}

/// `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteArgs {
    /// The file; its folders are made if missing.
    pub(crate) path: String,
    /// The whole new content (UTF-8 text).
    pub(crate) content: String,
}

/// One replacement of `edit_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Edit {
    /// The text to find: exactly, or else line by line ignoring each
    /// line's leading and trailing whitespace.
    #[serde(alias = "old_text")]
    pub(crate) old_text: String,
    /// What replaces it.
    #[serde(alias = "new_text")]
    pub(crate) new_text: String,
}

/// `edit_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EditArgs {
    /// The text file to edit.
    pub(crate) path: String,
    /// The replacements, applied in order, each to the text the ones
    /// before it left.
    pub(crate) edits: Vec<Edit>,
    /// Only show the diff; change nothing.
    #[serde(default, alias = "dry_run")]
    pub(crate) dry_run: bool,
}

/// How `list_directory_with_sizes` orders entries.
#[derive(Debug, Default, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SortBy {
    /// By name (the default).
    #[default]
    Name,
    /// Largest first.
    Size,
}

/// `list_directory_with_sizes`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ListSizesArgs {
    /// The directory.
    pub(crate) path: String,
    /// `name` (default) or `size`.
    #[serde(default, alias = "sort_by")]
    pub(crate) sort_by: SortBy,
}

/// `directory_tree`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TreeArgs {
    /// The directory at the top of the tree.
    pub(crate) path: String,
    /// Globs of what to leave out: a pattern without `/` matches a name at
    /// any depth (`node_modules`, `*.log`); one with `/` matches the path
    /// below `path` (`build/**`).
    #[serde(default, alias = "exclude_patterns")]
    pub(crate) exclude_patterns: Vec<String>,
}

/// `move_file` and `copy`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FromToArgs {
    /// What to move or copy.
    pub(crate) source: String,
    /// Where it goes; must not exist yet.
    pub(crate) destination: String,
    /// For `copy`: copy a directory and everything in it.
    #[serde(default)]
    pub(crate) recursive: bool,
}

/// `search_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SearchArgs {
    /// The directory to search below.
    pub(crate) path: String,
    /// A glob: without `/` it matches names at any depth (`*.rs`,
    /// `README*`); with `/`, the path below `path` (`src/**/*.rs`).
    pub(crate) pattern: String,
    /// Globs to leave out, as for `directory_tree`.
    #[serde(default, alias = "exclude_patterns")]
    pub(crate) exclude_patterns: Vec<String>,
}

/// `delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteArgs {
    /// The file, link or directory.
    pub(crate) path: String,
    /// Delete a directory with everything in it (without it, only an
    /// empty directory is deleted).
    #[serde(default)]
    pub(crate) recursive: bool,
}

/// `grep`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GrepArgs {
    /// A regular expression (Rust `regex` syntax, matched per line).
    pub(crate) pattern: String,
    /// A file, or a directory to search below (default: the whole
    /// workspace).
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// Only files whose name (or, with `/`, path below `path`) matches this
    /// glob, like `*.rs`.
    #[serde(default)]
    pub(crate) include: Option<String>,
    /// Match regardless of case.
    #[serde(default, alias = "case_insensitive")]
    pub(crate) case_insensitive: bool,
    /// The most matching lines to return (default 100, at most 500).
    #[serde(default, alias = "max_results")]
    pub(crate) max_results: Option<usize>,
}

/// `create_snapshot`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotArgs {
    /// A name to remember it by.
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// `diff`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffArgs {
    /// `live`, `snapshot:ID` or `branch:ID`.
    pub(crate) from: String,
    /// The same forms (default `live`).
    #[serde(default)]
    pub(crate) to: Option<String>,
}

/// `restore_snapshot`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreArgs {
    /// The snapshot's id.
    pub(crate) snapshot: String,
}

/// `run_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunArgs {
    /// A shell command line, run by `sh -c`, like `python3 test.py | tail -5`.
    #[serde(default)]
    pub(crate) command: Option<String>,
    /// The program and its arguments, instead of `command`.
    #[serde(default)]
    pub(crate) argv: Option<Vec<String>>,
    /// The command's standard input.
    #[serde(default)]
    pub(crate) stdin: Option<String>,
    /// Environment variables to set.
    #[serde(default)]
    pub(crate) env: Option<BTreeMap<String, String>>,
    /// End it after this many seconds (default and most: the service's).
    #[serde(default)]
    pub(crate) timeout_s: Option<f64>,
}

// ------------------------------------------------------------------ results

/// `get_file_info`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileInfo {
    /// The path asked about.
    pub(crate) path: String,
    /// `file`, `directory`, `symlink`, `fifo`, `socket`, `block device` or
    /// `character device`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Size in bytes (for a link, the length of its target).
    pub(crate) size: u64,
    /// Times, in RFC 3339.
    pub(crate) created: String,
    pub(crate) modified: String,
    pub(crate) accessed: String,
    /// Permission bits, in octal (`644`).
    pub(crate) permissions: String,
    pub(crate) is_directory: bool,
    pub(crate) is_file: bool,
    pub(crate) is_symlink: bool,
}

/// One node of `directory_tree`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TreeNode {
    pub(crate) name: String,
    /// `file` or `directory` (a link is a `file`: it is not followed).
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// A directory's entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) children: Option<Vec<TreeNode>>,
}

/// `directory_tree`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TreeResult {
    /// The directory's entries, recursively.
    pub(crate) tree: Vec<TreeNode>,
    /// How many entries are shown.
    pub(crate) entries: usize,
    /// Whether the tree was cut at the limit; `note` says so, or that the
    /// deepest directories are shown without their entries.
    pub(crate) truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

/// `search_files`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SearchResult {
    /// The matching paths, in the order found (names sorted in each
    /// directory).
    pub(crate) matches: Vec<String>,
    /// Whether there may be more than shown.
    pub(crate) truncated: bool,
}

/// One matching line of `grep`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct GrepMatch {
    pub(crate) path: String,
    /// The line's number, from 1.
    pub(crate) line: u64,
    /// The line (cut at 300 bytes).
    pub(crate) text: String,
}

/// `grep`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct GrepResult {
    pub(crate) matches: Vec<GrepMatch>,
    /// Files searched.
    pub(crate) files_searched: u64,
    /// Whether the search stopped at `max_results` (or the byte limit)
    /// before the end.
    pub(crate) truncated: bool,
    /// Files not searched, and why (binary, too large, unreadable); at most
    /// 100 are named.
    pub(crate) skipped: Vec<String>,
    /// The result's size so far.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) bytes: usize,
}

/// `list_snapshots`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SnapshotList {
    pub(crate) snapshots: Vec<SnapshotItem>,
}

/// One snapshot.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SnapshotItem {
    pub(crate) id: String,
    pub(crate) name: String,
    /// When it was taken, in RFC 3339.
    pub(crate) created: String,
    pub(crate) bytes: u64,
}

// ------------------------------------------------------------------- paths

/// A path argument as a workspace path: absolute (a relative one is taken
/// from the root). Resolution (`..`, links) is the library's, through the
/// caller's stack, which refuses what may not be reached.
pub(crate) fn ws_path(raw: &str) -> Result<String, Failure> {
    if raw.is_empty() {
        return Err(Failure::BadRequest("a path may not be empty".into()));
    }
    Ok(format!("/{}", raw.trim_start_matches('/')))
}

fn file_error(path: &str) -> impl Fn(FsError) -> Failure + '_ {
    move |e| Failure::from(e.with_path(path))
}

/// A time as RFC 3339.
pub(crate) fn rfc3339(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ------------------------------------------------------------------ reading

/// Bytes as text; a cut at `limit` may end inside a character, which is
/// then left out. Not UTF-8 at all: an error naming the path.
fn as_text(path: &str, mut bytes: Vec<u8>, cut: bool) -> Result<String, Failure> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) if cut && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            bytes = e.into_bytes();
            bytes.truncate(valid);
            Ok(String::from_utf8(bytes).unwrap_or_default())
        }
        Err(_) => Err(Failure::BadRequest(format!(
            "{path}: not UTF-8 text; read_media_file returns any file as base64"
        ))),
    }
}

/// `read_text_file`: the whole file (at most 256 KiB, with a note saying how
/// to read on), its first or last lines, or a byte range.
pub(crate) fn read_text_file(fs: &Files, args: &ReadTextArgs) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    let err = file_error(&path);
    match (args.head, args.tail) {
        (Some(_), Some(_)) => {
            return Err(Failure::BadRequest(
                "give `head` or `tail`, not both".into(),
            ));
        }
        (Some(_), _) | (_, Some(_)) if args.offset.is_some() || args.length.is_some() => {
            return Err(Failure::BadRequest(
                "`head` and `tail` count lines; `offset` and `length` count bytes: give one kind"
                    .into(),
            ));
        }
        (Some(n), None) => return head(fs, &path, n),
        (None, Some(n)) => return tail(fs, &path, n),
        (None, None) => {}
    }
    let meta = fs.metadata(&path).map_err(&err)?;
    if meta.is_dir() {
        return Err(Failure::BadRequest(format!(
            "{path}: a directory; list_directory lists it"
        )));
    }
    let offset = args.offset.unwrap_or(0);
    // At least one whole character (UTF-8 takes up to 4 bytes).
    let length = args
        .length
        .unwrap_or(TEXT_LIMIT as u64)
        .clamp(4, TEXT_LIMIT as u64);
    let bytes = fs
        .read_range(&path, offset, length as usize)
        .map_err(&err)?;
    let cut = offset + (bytes.len() as u64) < meta.len;
    let text = as_text(&path, bytes, cut)?;
    let next = offset + text.len() as u64;
    if next < meta.len {
        Ok(format!(
            "{text}\n\n[{path} has {} bytes; this is bytes {offset} to {next}. Call \
             read_text_file with offset {next} for more.]",
            meta.len
        ))
    } else {
        Ok(text)
    }
}

/// The first `n` lines, at most [`TEXT_LIMIT`] bytes.
fn head(fs: &Files, path: &str, n: u64) -> Result<String, Failure> {
    let err = file_error(path);
    let reader = fs.open_read(path).map_err(&err)?;
    let mut reader = BufReader::new(reader.take(TEXT_LIMIT as u64 + 1));
    let mut out = Vec::new();
    let mut lines = 0;
    while lines < n {
        let before = out.len();
        let read = reader
            .read_until(b'\n', &mut out)
            .map_err(|e| Failure::from(FsError::from_io(path, "read", e)))?;
        if read == 0 {
            break;
        }
        lines += 1;
        if out.len() > TEXT_LIMIT {
            out.truncate(before.max(TEXT_LIMIT));
            let text = as_text(path, out, true)?;
            return Ok(format!(
                "{text}\n\n[cut at 256 KiB after {lines} lines; read_text_file with offset \
                 and length reads the rest]"
            ));
        }
    }
    // Lines joined as the file has them, without the last line's newline.
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    as_text(path, out, false)
}

/// The last `n` lines, from at most the file's last [`TEXT_LIMIT`] bytes.
fn tail(fs: &Files, path: &str, n: u64) -> Result<String, Failure> {
    let err = file_error(path);
    let size = fs.metadata(path).map_err(&err)?.len;
    let start = size.saturating_sub(TEXT_LIMIT as u64);
    let bytes = fs.read_range(path, start, TEXT_LIMIT).map_err(&err)?;
    let mut body: &[u8] = &bytes;
    if body.last() == Some(&b'\n') {
        body = &body[..body.len() - 1];
    }
    // The start of the last `n` lines: after the n-th newline from the end.
    let mut cut_at = 0;
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                cut_at = i + 1;
                break;
            }
        }
    }
    if n == 0 {
        return Ok(String::new());
    }
    let whole = seen >= n || start == 0;
    // Without all `n` lines in the window, its first (partial) line is dropped.
    let from = if whole {
        cut_at
    } else {
        body.iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| i + 1)
    };
    // A window that starts inside a character: skip to the next whole one.
    let mut part = &body[from..];
    while let Some(b) = part.first() {
        if b & 0xC0 == 0x80 {
            part = &part[1..];
        } else {
            break;
        }
    }
    let text = as_text(path, part.to_vec(), false)?;
    if whole {
        Ok(text)
    } else {
        Ok(format!(
            "[only the last 256 KiB of {path} ({size} bytes) was read; the lines before are \
             not shown]\n{text}"
        ))
    }
}

/// `read_media_file`: the file as base64 with its MIME type (from its
/// name), at most [`MEDIA_LIMIT`] bytes.
pub(crate) fn read_media_file(fs: &Files, args: &PathArgs) -> Result<(String, String), Failure> {
    let path = ws_path(&args.path)?;
    let err = file_error(&path);
    let meta = fs.metadata(&path).map_err(&err)?;
    if meta.is_dir() {
        return Err(Failure::BadRequest(format!("{path}: a directory")));
    }
    if meta.len > MEDIA_LIMIT {
        return Err(Failure::BadRequest(format!(
            "{path}: {} bytes; read_media_file returns files of at most {} MiB (the HTTP files \
             API serves any size)",
            meta.len,
            MEDIA_LIMIT >> 20
        )));
    }
    let bytes = fs.read(&path).map_err(&err)?;
    let mime = mime_guess::from_path(&path)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string();
    Ok((
        base64::engine::general_purpose::STANDARD.encode(bytes),
        mime,
    ))
}

/// `read_multiple_files`: each file under a `path:` line, separated by
/// `---`; a file that fails shows its error in its place. At most
/// [`TEXT_LIMIT`] bytes in all: the files past it are named, not read.
pub(crate) fn read_multiple_files(fs: &Files, args: &ReadMultipleArgs) -> String {
    let mut parts = Vec::new();
    let mut used = 0usize;
    let mut left_out = Vec::new();
    for raw in &args.paths {
        if used >= TEXT_LIMIT {
            left_out.push(raw.clone());
            continue;
        }
        let one = ReadTextArgs {
            path: raw.clone(),
            head: None,
            tail: None,
            offset: None,
            length: Some((TEXT_LIMIT - used).max(4) as u64),
        };
        let shown = ws_path(raw).unwrap_or_else(|_| raw.clone());
        let part = match read_text_file(fs, &one) {
            Ok(text) => format!("{shown}:\n{text}\n"),
            Err(e) => format!("{shown}: Error - {}", e.message()),
        };
        used += part.len();
        parts.push(part);
    }
    let mut out = parts.join("\n---\n");
    if !left_out.is_empty() {
        let _ = write!(
            out,
            "\n---\n[256 KiB reached; not read: {}. Read them in another call.]",
            left_out.join(", ")
        );
    }
    out
}

// ------------------------------------------------------------------ writing

/// Makes `path`'s folders.
fn make_parents(fs: &Files, path: &str) -> Result<(), Failure> {
    if let Some((parent, _)) = anyfs::path::split_parent(Path::new(path)) {
        fs.create_dir_all(&parent).map_err(file_error(path))?;
    }
    Ok(())
}

/// `write_file`.
pub(crate) fn write_file(fs: &Files, args: &WriteArgs) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    make_parents(fs, &path)?;
    fs.write(&path, &args.content).map_err(file_error(&path))?;
    Ok(format!(
        "Successfully wrote {} bytes to {path}",
        args.content.len()
    ))
}

/// `create_directory`: with its parents; an existing directory is fine.
pub(crate) fn create_directory(fs: &Files, args: &PathArgs) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    fs.create_dir_all(&path).map_err(file_error(&path))?;
    Ok(format!("Successfully created directory {path}"))
}

/// `move_file`: refuses to replace what is at `destination`.
pub(crate) fn move_file(fs: &Files, args: &FromToArgs) -> Result<String, Failure> {
    let (from, to) = (ws_path(&args.source)?, ws_path(&args.destination)?);
    refuse_existing(fs, &to)?;
    fs.rename(&from, &to).map_err(Failure::from)?;
    Ok(format!("Successfully moved {from} to {to}"))
}

fn refuse_existing(fs: &Files, to: &str) -> Result<(), Failure> {
    match fs.symlink_metadata(to) {
        Ok(_) => Err(Failure::BadRequest(format!(
            "{to}: already exists; delete it first or choose another destination"
        ))),
        Err(e) if e.is_absent() => Ok(()),
        Err(e) => Err(file_error(to)(e)),
    }
}

/// `delete`: a file or link, an empty directory, or (`recursive`) a whole
/// tree.
pub(crate) fn delete(fs: &Files, args: &DeleteArgs) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    let err = file_error(&path);
    if path == "/" {
        return Err(Failure::BadRequest(
            "/: the workspace's root cannot be deleted; delete what is in it".into(),
        ));
    }
    let meta = fs.symlink_metadata(&path).map_err(&err)?;
    if meta.is_dir() && resolved(fs, &path)? == "/" {
        return Err(Failure::BadRequest(format!(
            "{path}: this is the workspace's root, which cannot be deleted; delete what is in it"
        )));
    }
    remove_node(fs, &path, meta.is_dir(), args.recursive).map_err(|e| {
        if e.kind() == anyfs::FsErrorKind::DirectoryNotEmpty {
            Failure::BadRequest(format!(
                "{path}: a directory that is not empty; give `recursive: true` to delete it \
                 with everything in it"
            ))
        } else {
            err(e)
        }
    })?;
    Ok(format!("Successfully deleted {path}"))
}

/// Removes what is at `path`: a file or link, or a directory (`is_dir`),
/// empty unless `recursive`. The HTTP API's delete and the MCP tool's.
pub(crate) fn remove_node(
    fs: &Files,
    path: &str,
    is_dir: bool,
    recursive: bool,
) -> anyfs::FsResult<()> {
    match (is_dir, recursive) {
        (true, true) => fs.remove_dir_all(path),
        (true, false) => fs.remove_dir(path),
        (false, _) => fs.remove_file(path),
    }
}

/// `copy`: a file (or link), or (`recursive`) a directory and everything
/// in it; refuses to replace what is at `destination`.
pub(crate) fn copy(fs: &Files, args: &FromToArgs) -> Result<String, Failure> {
    let (from, to) = (ws_path(&args.source)?, ws_path(&args.destination)?);
    refuse_existing(fs, &to)?;
    let meta = fs.symlink_metadata(&from).map_err(file_error(&from))?;
    if !meta.is_dir() {
        copy_node(fs, &from, &to, meta.file_type)?;
        return Ok(format!("Successfully copied {from} to {to}"));
    }
    if !args.recursive {
        return Err(Failure::BadRequest(format!(
            "{from}: a directory; give `recursive: true` to copy it with everything in it"
        )));
    }
    // Judged on where both resolve to (`..` and links applied), and the
    // copy walks the resolved source: never a tree that grows as it is
    // copied.
    let real_from = resolved(fs, &from)?;
    let real_to = match anyfs::path::split_parent(Path::new(&to)) {
        Some((parent, name)) => {
            let parent = resolved(fs, &parent.to_string_lossy())?;
            join(&parent, &name.to_string_lossy())
        }
        None => "/".to_string(),
    };
    let from_dir = format!("{}/", real_from.trim_end_matches('/'));
    if real_to.starts_with(&from_dir) || real_to == real_from {
        return Err(Failure::BadRequest(format!(
            "{to}: inside {from}; a directory cannot be copied into itself"
        )));
    }
    let from = real_from;
    fs.create_dir(&to).map_err(file_error(&to))?;
    let mut copied = 1usize;
    let walked = walk(fs, &from, &mut |rel, kind| {
        let (src, dst) = (join(&from, rel), join(&to, rel));
        copied += 1;
        if kind == FileType::Directory {
            fs.create_dir(&dst).map_err(file_error(&dst))?;
        } else {
            copy_node(fs, &src, &dst, kind)?;
        }
        Ok(Walk::Go)
    });
    // No half copy is left behind.
    if let Err(failure) = walked {
        let _ = fs.remove_dir_all(&to);
        return Err(failure);
    }
    Ok(format!(
        "Successfully copied {from} to {to} ({copied} entries)"
    ))
}

/// Where `path` leads, every `..` and link applied.
fn resolved(fs: &Files, path: &str) -> Result<String, Failure> {
    Ok(fs
        .canonicalize(path)
        .map_err(file_error(path))?
        .to_string_lossy()
        .into_owned())
}

fn copy_node(fs: &Files, from: &str, to: &str, kind: FileType) -> Result<(), Failure> {
    if kind == FileType::Symlink {
        let target = fs.read_link(from).map_err(file_error(from))?;
        fs.symlink(&target, to).map_err(file_error(to))
    } else {
        fs.copy(from, to).map_err(Failure::from)
    }
}

// ---------------------------------------------------------------- edit_file

/// `edit_file`: applies the edits in order to the file's text (line ends
/// read as `\n`), and writes the result unless `dry_run`; answers with a
/// unified diff of the change.
pub(crate) fn edit_file(fs: &Files, args: &EditArgs) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    let err = file_error(&path);
    let meta = fs.metadata(&path).map_err(&err)?;
    if meta.len > 16 << 20 {
        return Err(Failure::BadRequest(format!(
            "{path}: {} bytes; edit_file edits text files of at most 16 MiB",
            meta.len
        )));
    }
    let original = as_text(&path, fs.read(&path).map_err(&err)?, false)?;
    // A file whose every line ends in CRLF is edited as LF and written back
    // as CRLF; any other is edited as it is (mixed line ends are kept).
    let crlf = original.contains("\r\n")
        && original.matches('\n').count() == original.matches("\r\n").count();
    let original = if crlf {
        original.replace("\r\n", "\n")
    } else {
        original
    };
    let mut text = original.clone();
    let count = args.edits.len();
    for (i, edit) in args.edits.iter().enumerate() {
        let old = edit.old_text.replace("\r\n", "\n");
        let new = edit.new_text.replace("\r\n", "\n");
        if old.is_empty() {
            return Err(Failure::BadRequest(format!(
                "{path}: edit {} of {count} has an empty oldText",
                i + 1
            )));
        }
        text = apply_edit(&text, &old, &new).ok_or_else(|| {
            Failure::BadRequest(format!(
                "{path}: edit {} of {count}: this text was not found (neither exactly nor line \
                 by line ignoring indentation), so nothing was changed:\n{old}",
                i + 1
            ))
        })?;
    }
    // A diff that takes too long is approximated, never unbounded.
    let mut diff = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(1))
        .diff_lines(&original, &text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path}\toriginal"), &format!("{path}\tmodified"))
        .to_string();
    if diff.len() > TEXT_LIMIT {
        let mut end = TEXT_LIMIT;
        while !diff.is_char_boundary(end) {
            end -= 1;
        }
        diff.truncate(end);
        diff.push_str("\n[the diff is cut at 256 KiB; read the file for the rest]\n");
    }
    if !args.dry_run && text != original {
        let out = if crlf {
            text.replace('\n', "\r\n")
        } else {
            text
        };
        fs.write(&path, out).map_err(&err)?;
    }
    // A fence longer than any run of backticks in the diff.
    let mut longest = 0;
    let mut run = 0;
    for b in diff.bytes() {
        run = if b == b'`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    Ok(format!("{fence}diff\n{diff}{fence}\n"))
}

/// One replacement: the first exact occurrence of `old`; failing that, the
/// first run of lines equal to `old`'s lines once each line's surrounding
/// whitespace is ignored, replaced by `new` re-indented to sit where the
/// matched lines did. `None` when neither is found.
pub(crate) fn apply_edit(text: &str, old: &str, new: &str) -> Option<String> {
    if let Some(at) = text.find(old) {
        let mut out = String::with_capacity(text.len() + new.len());
        out.push_str(&text[..at]);
        out.push_str(new);
        out.push_str(&text[at + old.len()..]);
        return Some(out);
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let wanted: Vec<&str> = old.trim_end_matches('\n').split('\n').collect();
    if wanted.iter().all(|l| l.trim().is_empty()) {
        return None;
    }
    let start = (0..lines.len().checked_sub(wanted.len())? + 1).find(|&i| {
        wanted
            .iter()
            .zip(&lines[i..])
            .all(|(w, l)| w.trim() == l.trim())
    })?;
    let matched = &lines[start..start + wanted.len()];
    // The edit's first non-blank line and its match in the file set the
    // base: a new line indented like one of the edit's old lines takes
    // that file line's own indentation (tabs stay tabs); any other keeps
    // its depth relative to the edit's base, placed at the file's.
    let first = wanted
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(0);
    let file_base = lead(matched[first]);
    let edit_base = lead(wanted[first]).chars().count();
    let replacement: Vec<String> = new
        .trim_end_matches('\n')
        .split('\n')
        .map(|line| {
            if line.trim().is_empty() {
                return String::new();
            }
            let own = lead(line);
            if let Some(i) = wanted
                .iter()
                .position(|w| !w.trim().is_empty() && lead(w) == own)
            {
                return format!("{}{}", lead(matched[i]), line.trim_start());
            }
            let depth = own.chars().count().saturating_sub(edit_base);
            format!("{file_base}{}{}", " ".repeat(depth), line.trim_start())
        })
        .collect();
    let mut out: Vec<String> = lines[..start].iter().map(|s| s.to_string()).collect();
    out.extend(replacement);
    out.extend(lines[start + wanted.len()..].iter().map(|s| s.to_string()));
    Some(out.join("\n"))
}

/// A line's leading whitespace.
fn lead(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

// ------------------------------------------------------------------ listing

/// `list_directory`: `[DIR] name` or `[FILE] name`, sorted by name.
pub(crate) fn list_directory(fs: &Files, args: &PathArgs) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    let entries = entries(fs, &path)?;
    let mut out: Vec<String> = entries
        .iter()
        .take(ENTRY_LIMIT)
        .map(|(name, kind, _)| {
            let tag = if *kind == FileType::Directory {
                "[DIR]"
            } else {
                "[FILE]"
            };
            format!("{tag} {name}")
        })
        .collect();
    if entries.len() > ENTRY_LIMIT {
        out.push(format!(
            "[{} more entries not shown]",
            entries.len() - ENTRY_LIMIT
        ));
    }
    Ok(out.join("\n"))
}

/// A directory's entries: (name, type, size).
type Entries = Vec<(String, FileType, u64)>;

/// A directory's entries: (name, type, size), sorted by name.
fn entries(fs: &Files, path: &str) -> Result<Entries, Failure> {
    let err = file_error(path);
    let mut out = Vec::new();
    for entry in fs.read_dir(path).map_err(&err)? {
        let entry = entry.map_err(&err)?;
        out.push((
            entry.name.to_string_lossy().into_owned(),
            entry.file_type,
            0,
        ));
    }
    out.sort();
    Ok(out)
}

/// `list_directory_with_sizes`: entries with sizes, and totals.
pub(crate) fn list_directory_with_sizes(
    fs: &Files,
    args: &ListSizesArgs,
) -> Result<String, Failure> {
    let path = ws_path(&args.path)?;
    let mut list = entries(fs, &path)?;
    for (name, kind, size) in &mut list {
        if *kind != FileType::Directory {
            let child = join(&path, name);
            *size = fs.symlink_metadata(&child).map_err(file_error(&child))?.len;
        }
    }
    if args.sort_by == SortBy::Size {
        list.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    }
    let (mut files, mut dirs, mut total) = (0u64, 0u64, 0u64);
    let mut out = Vec::new();
    for (name, kind, size) in &list {
        if *kind == FileType::Directory {
            dirs += 1;
            if out.len() < ENTRY_LIMIT {
                out.push(format!("[DIR]  {name}"));
            }
        } else {
            files += 1;
            total += size;
            if out.len() < ENTRY_LIMIT {
                out.push(format!("[FILE] {name:<30} {:>10}", human(*size)));
            }
        }
    }
    if list.len() > ENTRY_LIMIT {
        out.push(format!(
            "[{} more entries not shown]",
            list.len() - ENTRY_LIMIT
        ));
    }
    out.push(String::new());
    out.push(format!("Total: {files} files, {dirs} directories"));
    out.push(format!("Combined size: {}", human(total)));
    Ok(out.join("\n"))
}

/// Bytes for people: `812 B`, `4.00 KB`, `1.50 MB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// `get_file_info` (of the path itself: a link is described, not followed).
pub(crate) fn get_file_info(fs: &Files, args: &PathArgs) -> Result<FileInfo, Failure> {
    let path = ws_path(&args.path)?;
    let m = fs.symlink_metadata(&path).map_err(file_error(&path))?;
    let kind = match m.file_type {
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::File => "file",
    };
    Ok(FileInfo {
        kind: kind.to_string(),
        size: m.len,
        created: rfc3339(m.created),
        modified: rfc3339(m.modified),
        accessed: rfc3339(m.accessed),
        permissions: format!("{:o}", m.permissions.mode() & 0o7777),
        is_directory: m.is_dir(),
        is_file: m.file_type == FileType::File,
        is_symlink: m.file_type == FileType::Symlink,
        path,
    })
}

// ------------------------------------------------------------------- walks

/// What a walk does after an entry.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    /// Go on (into it, if a directory).
    Go,
    /// Do not enter this directory.
    Skip,
    /// Stop the walk.
    Stop,
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Visits everything below `root`, depth first with names sorted, giving
/// each entry's path relative to `root` and its type. Links are not
/// followed. At most [`WALK_LIMIT`] entries: past that, an error says so.
fn walk(
    fs: &Files,
    root: &str,
    visit: &mut dyn FnMut(&str, FileType) -> Result<Walk, Failure>,
) -> Result<bool, Failure> {
    let mut seen = 0usize;
    let started = std::time::Instant::now();
    let mut stack: Vec<(String, Entries, usize)> = vec![(String::new(), entries(fs, root)?, 0)];
    while let Some((rel_dir, list, next)) = stack.last_mut() {
        let Some((name, kind, _)) = list.get(*next).cloned() else {
            stack.pop();
            continue;
        };
        *next += 1;
        seen += 1;
        if started.elapsed() > WALK_TIME {
            return Err(Failure::BadRequest(format!(
                "{root}: walking it took over {} s; narrow the call to a smaller directory",
                WALK_TIME.as_secs()
            )));
        }
        if seen > WALK_LIMIT {
            return Err(Failure::BadRequest(format!(
                "{root}: more than {WALK_LIMIT} entries below it; narrow the call to a \
                 smaller directory"
            )));
        }
        let rel = if rel_dir.is_empty() {
            name
        } else {
            format!("{rel_dir}/{name}")
        };
        match visit(&rel, kind)? {
            Walk::Stop => return Ok(false),
            Walk::Skip => {}
            Walk::Go if kind == FileType::Directory => {
                let list = entries(fs, &join(root, &rel))?;
                stack.push((rel, list, 0));
            }
            Walk::Go => {}
        }
    }
    Ok(true)
}

/// Globs as `directory_tree`, `search_files` and `grep` take them: one
/// without `/` matches a name at any depth; one with `/`, the path below
/// the walk's root.
struct Patterns {
    names: GlobSet,
    paths: GlobSet,
    any: bool,
}

impl Patterns {
    fn new(patterns: &[String]) -> Result<Self, Failure> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in patterns {
            let trimmed = pattern.trim_start_matches("./").trim_start_matches('/');
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .build()
                .map_err(|e| Failure::BadRequest(format!("pattern {pattern:?}: {e}")))?;
            if trimmed.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let built = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Failure::BadRequest(format!("patterns: {e}")))
        };
        Ok(Self {
            names: built(names)?,
            paths: built(paths)?,
            any: !patterns.is_empty(),
        })
    }

    fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.names.is_match(name) || self.paths.is_match(rel)
    }
}

/// `directory_tree`: everything below `path` as nested nodes, at most
/// [`ENTRY_LIMIT`] of them.
pub(crate) fn directory_tree(fs: &Files, args: &TreeArgs) -> Result<TreeResult, Failure> {
    let path = ws_path(&args.path)?;
    if !fs.metadata(&path).map_err(file_error(&path))?.is_dir() {
        return Err(Failure::BadRequest(format!("{path}: not a directory")));
    }
    let exclude = Patterns::new(&args.exclude_patterns)?;
    // Nodes by their parent's relative path, then assembled.
    let mut shown = 0usize;
    let mut bytes = 0usize;
    let mut truncated = false;
    let mut too_deep = false;
    let mut flat: Vec<(String, FileType)> = Vec::new();
    walk(fs, &path, &mut |rel, kind| {
        if exclude.matches(rel) {
            return Ok(Walk::Skip);
        }
        let name_len = rel.rsplit('/').next().map_or(0, str::len) + 40;
        if shown >= ENTRY_LIMIT || bytes + name_len > RESULT_BYTES {
            truncated = true;
            return Ok(Walk::Stop);
        }
        shown += 1;
        bytes += name_len;
        flat.push((rel.to_string(), kind));
        if rel.matches('/').count() + 1 >= TREE_DEPTH {
            too_deep |= kind == FileType::Directory;
            return Ok(Walk::Skip);
        }
        Ok(Walk::Go)
    })?;
    let tree = assemble(&flat, "");
    Ok(TreeResult {
        tree,
        entries: shown,
        truncated,
        note: match (truncated, too_deep) {
            (true, _) => Some(format!(
                "cut at {shown} entries: call directory_tree on a subdirectory, or exclude some"
            )),
            (false, true) => Some(format!(
                "directories {TREE_DEPTH} levels down are shown without their entries: call \
                 directory_tree on one of them"
            )),
            (false, false) => None,
        },
    })
}

/// Nests walk order (depth first, a directory before what it holds).
fn assemble(flat: &[(String, FileType)], parent: &str) -> Vec<TreeNode> {
    let prefix = if parent.is_empty() {
        String::new()
    } else {
        format!("{parent}/")
    };
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        let (rel, kind) = &flat[i];
        let Some(name) = rel.strip_prefix(&prefix) else {
            i += 1;
            continue;
        };
        if name.contains('/') {
            i += 1;
            continue;
        }
        let dir = *kind == FileType::Directory;
        let mut end = i + 1;
        let inner = format!("{rel}/");
        while end < flat.len() && flat[end].0.starts_with(&inner) {
            end += 1;
        }
        nodes.push(TreeNode {
            name: name.to_string(),
            kind: if dir { "directory" } else { "file" },
            children: dir.then(|| assemble(&flat[i + 1..end], rel)),
        });
        i = end;
    }
    nodes
}

/// `search_files`: paths below `path` that match `pattern`, at most
/// [`SEARCH_LIMIT`].
pub(crate) fn search_files(fs: &Files, args: &SearchArgs) -> Result<SearchResult, Failure> {
    let path = ws_path(&args.path)?;
    let wanted = Patterns::new(std::slice::from_ref(&args.pattern))?;
    let exclude = Patterns::new(&args.exclude_patterns)?;
    let mut matches = Vec::new();
    let mut truncated = false;
    let mut bytes = 0usize;
    walk(fs, &path, &mut |rel, _| {
        if exclude.matches(rel) {
            return Ok(Walk::Skip);
        }
        if wanted.matches(rel) {
            let found = join(&path, rel);
            bytes += found.len() + 4;
            if matches.len() == SEARCH_LIMIT || bytes > RESULT_BYTES {
                truncated = true;
                return Ok(Walk::Stop);
            }
            matches.push(found);
        }
        Ok(Walk::Go)
    })?;
    Ok(SearchResult { matches, truncated })
}

// -------------------------------------------------------------------- grep

/// `grep`: lines matching a regular expression in the files at or below
/// `path`.
pub(crate) fn grep(fs: &Files, args: &GrepArgs) -> Result<GrepResult, Failure> {
    let path = ws_path(args.path.as_deref().unwrap_or("/"))?;
    let regex = regex::RegexBuilder::new(&args.pattern)
        .case_insensitive(args.case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Failure::BadRequest(format!("pattern: {e}")))?;
    let include = args
        .include
        .as_ref()
        .map(|g| Patterns::new(std::slice::from_ref(g)))
        .transpose()?;
    let most = args
        .max_results
        .unwrap_or(GREP_DEFAULT)
        .clamp(1, GREP_LIMIT);
    let mut result = GrepResult {
        matches: Vec::new(),
        files_searched: 0,
        truncated: false,
        skipped: Vec::new(),
        bytes: 0,
    };
    let mut budget = GREP_TOTAL;
    let meta = fs.metadata(&path).map_err(file_error(&path))?;
    if !meta.is_dir() {
        grep_file(fs, &path, &regex, most, &mut budget, &mut result)?;
        return Ok(result);
    }
    walk(fs, &path, &mut |rel, kind| {
        if kind != FileType::File {
            return Ok(Walk::Go);
        }
        if include.as_ref().is_some_and(|p| p.any && !p.matches(rel)) {
            return Ok(Walk::Go);
        }
        let keep_going = grep_file(
            fs,
            &join(&path, rel),
            &regex,
            most,
            &mut budget,
            &mut result,
        )?;
        Ok(if keep_going { Walk::Go } else { Walk::Stop })
    })?;
    Ok(result)
}

/// Searches one file; `false` once the search must stop.
fn grep_file(
    fs: &Files,
    path: &str,
    regex: &regex::Regex,
    most: usize,
    budget: &mut u64,
    result: &mut GrepResult,
) -> Result<bool, Failure> {
    let mut skip = |why: String| match result.skipped.len() {
        0..100 => result.skipped.push(why),
        100 => result
            .skipped
            .push("… and more files were skipped (not named)".into()),
        _ => {}
    };
    // A refusal that every other file would get too ends the search.
    let fatal = |e: &FsError| {
        matches!(
            e.kind(),
            anyfs::FsErrorKind::RateLimitExceeded | anyfs::FsErrorKind::Io
        )
    };
    let size = match fs.metadata(path) {
        Ok(m) => m.len,
        Err(e) if fatal(&e) => return Err(Failure::from(e)),
        Err(e) => {
            skip(format!("{path}: {e}"));
            return Ok(true);
        }
    };
    if size > GREP_FILE_LIMIT {
        skip(format!("{path}: {size} bytes, larger than grep searches"));
        return Ok(true);
    }
    if size > *budget {
        result.truncated = true;
        return Ok(false);
    }
    *budget -= size;
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) if fatal(&e) => return Err(Failure::from(e)),
        Err(e) => {
            skip(format!("{path}: {e}"));
            return Ok(true);
        }
    };
    if bytes[..bytes.len().min(8192)].contains(&0) {
        skip(format!("{path}: binary"));
        return Ok(true);
    }
    result.files_searched += 1;
    for (number, line) in String::from_utf8_lossy(&bytes).split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if regex.is_match(line) {
            result.bytes += path.len() + line.len().min(GREP_LINE) + 30;
            if result.matches.len() == most || result.bytes > RESULT_BYTES {
                result.truncated = true;
                return Ok(false);
            }
            let mut text = line.to_string();
            if text.len() > GREP_LINE {
                let mut end = GREP_LINE;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push('…');
            }
            result.matches.push(GrepMatch {
                path: path.to_string(),
                line: number as u64 + 1,
                text,
            });
        }
    }
    Ok(true)
}

/// `list_snapshots`'s items.
pub(crate) fn snapshot_items(list: &[anyfs::snapshots::SnapshotInfo]) -> SnapshotList {
    SnapshotList {
        snapshots: list
            .iter()
            .map(|s| SnapshotItem {
                id: s.id.to_string(),
                name: s.name.clone(),
                created: rfc3339(s.created),
                bytes: s.bytes,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_edit_replaces_the_first_occurrence() {
        assert_eq!(apply_edit("a b a", "a", "c").as_deref(), Some("c b a"));
    }

    #[test]
    fn loose_edit_keeps_the_files_indentation() {
        let text = "fn f() {\n    if x {\n        y();\n    }\n}\n";
        let old = "if x {\n    y();\n}";
        let new = "if z {\n    w();\n    v();\n}";
        // Not found exactly (the file's lines are indented more).
        assert!(!text.contains(old));
        let out = apply_edit(text, old, new).expect("a line-by-line match");
        assert_eq!(
            out,
            "fn f() {\n    if z {\n        w();\n        v();\n    }\n}\n"
        );
    }

    #[test]
    fn missing_text_is_none() {
        assert_eq!(apply_edit("abc", "x\ny", "z"), None);
    }

    #[test]
    fn tree_nests_in_walk_order() {
        let flat = vec![
            ("a".to_string(), FileType::Directory),
            ("a/b".to_string(), FileType::File),
            ("a/c".to_string(), FileType::Directory),
            ("a/c/d".to_string(), FileType::File),
            ("e".to_string(), FileType::File),
        ];
        let tree = assemble(&flat, "");
        let json = serde_json::to_value(&tree).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!([
                {"name": "a", "type": "directory", "children": [
                    {"name": "b", "type": "file"},
                    {"name": "c", "type": "directory", "children": [{"name": "d", "type": "file"}]}
                ]},
                {"name": "e", "type": "file"}
            ])
        );
    }
}
