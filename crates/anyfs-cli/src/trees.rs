//! `anyfs snapshot`, `anyfs branch`, `anyfs diff`, `anyfs merge`: the
//! snapshots and branches of a workspace file, readable or as `--json`.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use anyfs::snapshots::{
    BranchId, BranchInfo, Change, MergeOptions, MergeOutcome, NodeState, SnapshotId, SnapshotInfo,
    Take, TreeRef,
};
use anyfs::{FsSnapshots, VRootFsBackend};
use anyfs_sqlite::{SqliteBackend, SqliteOptions};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::workspace::{Overlaid, open_file, open_overlay, overlaid_dir};

/// The workspace file a command works on.
#[derive(Debug, Clone, Args)]
pub(crate) struct FileArgs {
    /// The workspace file.
    #[arg(value_name = "WORKSPACE")]
    workspace: PathBuf,
    /// The environment variable holding the workspace's password (an
    /// encrypted workspace asks for it otherwise).
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Print JSON instead of lines for people.
    #[arg(long)]
    json: bool,
}

impl FileArgs {
    /// The workspace, which must exist: a mistyped name is not a new,
    /// empty workspace.
    fn open(&self) -> Result<SqliteBackend, String> {
        if !self.workspace.is_file() {
            return Err(format!(
                "{}: no workspace file there",
                self.workspace.display()
            ));
        }
        open_file(
            &self.workspace,
            self.password_env.as_deref(),
            SqliteOptions::default(),
        )
    }

    fn fail(&self, e: anyfs::FsError) -> String {
        format!("{}: {e}", self.workspace.display())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Take a snapshot of the workspace as it is now.
    Create {
        #[command(flatten)]
        file: FileArgs,
        /// A name for it (any text).
        #[arg(default_value = "")]
        name: String,
    },
    /// The workspace's snapshots, oldest first.
    List {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Delete a snapshot (refused while a branch counts from it).
    Delete {
        #[command(flatten)]
        file: FileArgs,
        /// The snapshot's id.
        id: u64,
    },
    /// Make the workspace what the snapshot holds; every change since is
    /// lost (take a snapshot first to keep them).
    Restore {
        #[command(flatten)]
        file: FileArgs,
        /// The snapshot's id.
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BranchCommand {
    /// Make a branch that starts as snapshot SNAPSHOT.
    Create {
        #[command(flatten)]
        file: FileArgs,
        /// The snapshot it starts from.
        snapshot: u64,
        /// Its name.
        name: String,
    },
    /// The workspace's branches, oldest first.
    List {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Delete a branch and what only it holds.
    Delete {
        #[command(flatten)]
        file: FileArgs,
        /// The branch's id.
        id: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    #[command(flatten)]
    file: FileArgs,
    /// The tree to compare from: `live`, `snapshot:ID` or `branch:ID`
    /// (none, for an overlay workspace: the directory it overlays).
    from: Option<String>,
    /// The tree to compare to.
    #[arg(default_value = "live")]
    to: String,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    file: FileArgs,
    /// The directory to write the changes into (the one the workspace
    /// overlays, usually).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// The side conflicting paths take.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Side {
    /// The branch's version.
    Branch,
    /// The version already in the tree merged into.
    Into,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    #[command(flatten)]
    file: FileArgs,
    /// The branch's id.
    branch: u64,
    /// The tree to merge into: `live` or `branch:ID`.
    #[arg(long, default_value = "live")]
    into: String,
    /// The side every conflicting path takes (default: none; conflicts
    /// are listed and nothing is applied).
    #[arg(long, value_enum)]
    take: Option<Side>,
}

fn seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn snapshot_json(s: &SnapshotInfo) -> Value {
    json!({"id": s.id.0, "name": s.name, "created": seconds(s.created), "bytes": s.bytes})
}

fn branch_json(b: &BranchInfo) -> Value {
    json!({"id": b.id.0, "name": b.name, "base": b.base.0, "created": seconds(b.created)})
}

fn print_json(value: &Value) {
    println!("{value}");
}

pub(crate) fn snapshot(command: SnapshotCommand) -> Result<(), String> {
    match command {
        SnapshotCommand::Create { file, name } => {
            let fs = file.open()?;
            let info = fs.create_snapshot(&name).map_err(|e| file.fail(e))?;
            if file.json {
                print_json(&snapshot_json(&info));
            } else {
                println!(
                    "snapshot {} taken of {} ({} bytes)",
                    info.id,
                    file.workspace.display(),
                    info.bytes
                );
            }
        }
        SnapshotCommand::List { file } => {
            let list = file.open()?.snapshots().map_err(|e| file.fail(e))?;
            let header = format!("{:>6}  {:>12}  {:<20}  NAME", "ID", "BYTES", "TAKEN");
            print_list(&file, &list, snapshot_json, "snapshots", &header, |s| {
                format!(
                    "{:>6}  {:>12}  {:<20}  {}",
                    s.id,
                    s.bytes,
                    when(s.created),
                    s.name
                )
            });
        }
        SnapshotCommand::Delete { file, id } => {
            file.open()?
                .delete_snapshot(SnapshotId(id))
                .map_err(|e| file.fail(e))?;
            done(
                &file,
                json!({"deleted": id}),
                &format!("snapshot {id} deleted"),
            );
        }
        SnapshotCommand::Restore { file, id } => {
            file.open()?
                .restore(SnapshotId(id))
                .map_err(|e| file.fail(e))?;
            done(
                &file,
                json!({"restored": id}),
                &format!("{} is snapshot {id} again", file.workspace.display()),
            );
        }
    }
    Ok(())
}

pub(crate) fn branch(command: BranchCommand) -> Result<(), String> {
    match command {
        BranchCommand::Create {
            file,
            snapshot,
            name,
        } => {
            let info = file
                .open()?
                .branch(SnapshotId(snapshot), &name)
                .map_err(|e| file.fail(e))?;
            if file.json {
                print_json(&branch_json(&info));
            } else {
                println!(
                    "branch {} ({}) made from snapshot {snapshot}; work in it with \
                     `anyfs run --branch {} {} -- COMMAND`",
                    info.id,
                    info.name,
                    info.id,
                    file.workspace.display()
                );
            }
        }
        BranchCommand::List { file } => {
            let list = file.open()?.branches().map_err(|e| file.fail(e))?;
            let header = format!("{:>6}  {:>6}  {:<20}  NAME", "ID", "BASE", "MADE");
            print_list(&file, &list, branch_json, "branches", &header, |b| {
                format!(
                    "{:>6}  {:>6}  {:<20}  {}",
                    b.id,
                    b.base,
                    when(b.created),
                    b.name
                )
            });
        }
        BranchCommand::Delete { file, id } => {
            file.open()?
                .delete_branch(BranchId(id))
                .map_err(|e| file.fail(e))?;
            done(
                &file,
                json!({"deleted": id}),
                &format!("branch {id} deleted"),
            );
        }
    }
    Ok(())
}

/// Prints a listing: a JSON array, `no WHAT`, or a table.
fn print_list<T>(
    file: &FileArgs,
    items: &[T],
    to_json: fn(&T) -> Value,
    what: &str,
    header: &str,
    row: impl Fn(&T) -> String,
) {
    if file.json {
        print_json(&Value::Array(items.iter().map(to_json).collect()));
    } else if items.is_empty() {
        println!("no {what}");
    } else {
        println!("{header}");
        for item in items {
            println!("{}", row(item));
        }
    }
}

fn done(file: &FileArgs, value: Value, text: &str) {
    if file.json {
        print_json(&value);
    } else {
        println!("{text}");
    }
}

/// A time as `YYYY-MM-DD HH:MM:SS` (UTC).
fn when(t: std::time::SystemTime) -> String {
    let secs = seconds(t);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The calendar date of a day count since 1970-01-01 (proleptic
/// Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn tree(raw: &str) -> Result<TreeRef, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?}: a tree is `live`, `snapshot:ID` or `branch:ID`"))
}

fn node(n: &NodeState) -> Value {
    json!({
        "type": match n.file_type {
            anyfs::FileType::File => "file",
            anyfs::FileType::Directory => "dir",
            anyfs::FileType::Symlink => "symlink",
        },
        "size": n.len,
        "mode": format!("{:o}", n.permissions.mode()),
    })
}

fn change_json(c: &Change) -> Value {
    let mut out = json!({"change": c.kind(), "path": c.path().display().to_string()});
    if let Some(old) = c.old() {
        out["old"] = node(old);
    }
    if let Some(new) = c.new_state() {
        out["new"] = node(new);
    }
    out
}

/// One change as a line: what, where, and what changed in it.
fn change_line(c: &Change) -> String {
    let slash = |n: Option<&NodeState>| {
        if n.is_some_and(|n| n.file_type == anyfs::FileType::Directory) {
            "/"
        } else {
            ""
        }
    };
    let path = format!("{}{}", c.path().display(), slash(c.new_state().or(c.old())));
    let detail = match (c.old(), c.new_state()) {
        (Some(old), Some(new)) => {
            let mut parts = Vec::new();
            if old.len != new.len && new.file_type != anyfs::FileType::Directory {
                parts.push(format!("{} → {} bytes", old.len, new.len));
            }
            if old.permissions != new.permissions {
                parts.push(format!(
                    "mode {:o} → {:o}",
                    old.permissions.mode(),
                    new.permissions.mode()
                ));
            }
            parts.join(", ")
        }
        (None, Some(new)) if new.file_type == anyfs::FileType::File => {
            format!("{} bytes", new.len)
        }
        _ => String::new(),
    };
    if detail.is_empty() {
        format!("{:<9} {path}", c.kind())
    } else {
        format!("{:<9} {path}  ({detail})", c.kind())
    }
}

/// The overlay a workspace file is, over the directory it remembers.
fn overlay_of(file: &FileArgs) -> Result<Overlaid<SqliteBackend>, String> {
    let upper = file.open()?;
    let label = file.workspace.display().to_string();
    let dir = overlaid_dir(&upper)?.ok_or_else(|| {
        format!("{label} overlays no directory (give trees to compare: `live`, `snapshot:ID`, `branch:ID`)")
    })?;
    open_overlay(upper, &dir, &label)
}

pub(crate) fn diff(args: DiffArgs) -> Result<(), String> {
    let Some(from) = &args.from else {
        let overlay = overlay_of(&args.file)?;
        let changes = overlay.changes();
        return print_changes(
            &args.file,
            changes,
            "the directory it overlays",
            "the workspace",
        );
    };
    let (from, to) = (tree(from)?, tree(&args.to)?);
    let fs = args.file.open()?;
    let changes = fs.diff(from, to).map_err(|e| args.file.fail(e))?;
    print_changes(&args.file, changes, &from.to_string(), &to.to_string())
}

/// Prints changes as they come, and how many there were.
fn print_changes(
    file: &FileArgs,
    changes: impl Iterator<Item = anyfs::FsResult<Change>>,
    from: &str,
    to: &str,
) -> Result<(), String> {
    let mut count = 0u64;
    for change in changes {
        let change = change.map_err(|e| file.fail(e))?;
        count += 1;
        if file.json {
            print_json(&change_json(&change));
        } else {
            println!("{}", change_line(&change));
        }
    }
    if !file.json {
        match count {
            0 => eprintln!("no changes from {from} to {to}"),
            n => eprintln!("{n} change(s) from {from} to {to}"),
        }
    }
    Ok(())
}

/// Writes an overlay's changes into a directory; the exit status is 1
/// when some paths were conflicts.
pub(crate) fn apply(args: ApplyArgs) -> Result<u8, String> {
    let overlay = overlay_of(&args.file)?;
    let target =
        VRootFsBackend::new(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let applied = overlay
        .apply(&target)
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    if args.file.json {
        print_json(&json!({
            "written": applied.written,
            "conflicts": applied.conflicts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }));
    } else {
        for path in &applied.conflicts {
            println!(
                "conflict  {}  (changed in {} since the overlay changed it)",
                path.display(),
                args.dir.display()
            );
        }
        println!(
            "{} path(s) written to {}",
            applied.written,
            args.dir.display()
        );
        if !applied.conflicts.is_empty() {
            eprintln!(
                "{} conflict(s): nothing was written for them",
                applied.conflicts.len()
            );
        }
    }
    Ok(u8::from(!applied.conflicts.is_empty()))
}

/// Merges; the exit status is 1 when conflicts stopped it.
pub(crate) fn merge(args: MergeArgs) -> Result<u8, String> {
    let into = tree(&args.into)?;
    let fs = args.file.open()?;
    let options = MergeOptions::taking(match args.take {
        None => Take::Neither,
        Some(Side::Branch) => Take::Branch,
        Some(Side::Into) => Take::Into,
    });
    let outcome = fs
        .merge(BranchId(args.branch), into, &options)
        .map_err(|e| args.file.fail(e))?;
    match outcome {
        MergeOutcome::Applied { applied, kept } => {
            if args.file.json {
                print_json(&json!({"applied": applied, "kept": kept}));
            } else {
                println!(
                    "branch {} merged into {into}: {applied} path(s) applied{}",
                    args.branch,
                    if kept > 0 {
                        format!(", {kept} conflicting path(s) kept as they were")
                    } else {
                        String::new()
                    }
                );
            }
            Ok(0)
        }
        MergeOutcome::Conflicts(conflicts) => {
            if args.file.json {
                print_json(&json!({"conflicts": conflicts.iter().map(|c| json!({
                    "path": c.path.display().to_string(),
                    "branch": change_json(&c.branch),
                    "into": change_json(&c.into),
                })).collect::<Vec<_>>()}));
            } else {
                for c in &conflicts {
                    println!(
                        "conflict  {}  (branch: {} {}; {into}: {} {})",
                        c.path.display(),
                        c.branch.kind(),
                        c.branch.path().display(),
                        c.into.kind(),
                        c.into.path().display()
                    );
                }
                eprintln!(
                    "{} conflict(s): nothing was applied. Choose a side with --take branch \
                     or --take into.",
                    conflicts.len()
                );
            }
            Ok(1)
        }
    }
}
