//! `anyfs migrate`: an embedded deployment moved into PostgreSQL and an
//! object store (the work is `anyfs_server::migrate`); progress on stderr,
//! the report on stdout.

use std::path::PathBuf;

use anyfs_server::{Counts, MigrateOptions, Progress};

/// What `anyfs migrate` was given.
pub(crate) struct Args {
    pub(crate) from: PathBuf,
    pub(crate) database: String,
    pub(crate) stores: crate::serve::Stores,
    pub(crate) quota: u64,
    pub(crate) scratch_dir: Option<PathBuf>,
}

/// One progress line, on stderr.
fn show(progress: Progress) {
    let line = match progress {
        Progress::SourceChecked {
            accounts,
            audit_records,
        } => format!(
            "source checked: {accounts} accounts, {audit_records} audit records, the master key opens it and its audit chain is intact"
        ),
        Progress::Registry { written, accounts } => format!(
            "registry: the rows of {written} accounts written, of {} by an earlier run",
            accounts - written
        ),
        Progress::Audit { done, total } => format!("audit: {done} of {total} records carried over"),
        Progress::Account {
            index,
            total,
            id,
            done_before,
        } => format!(
            "account {index}/{total} {id}: {}",
            if done_before {
                "copied before, checking"
            } else {
                "copying"
            }
        ),
        Progress::Files { id, counts } => format!(
            "account {id}: {} files, {} bytes copied",
            counts.files, counts.bytes
        ),
        Progress::AccountChecked { id, counts } => {
            format!("account {id}: {}: matches the source", summary(&counts))
        }
        _ => return,
    };
    eprintln!("anyfs migrate: {line}");
}

fn summary(counts: &Counts) -> String {
    format!(
        "{} files, {} folders, {} symlinks, {} bytes",
        counts.files, counts.dirs, counts.symlinks, counts.bytes
    )
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    crate::hardening::owner_only_files();
    let objects = args
        .stores
        .objects()?
        .ok_or("--objects is required: s3://BUCKET/PREFIX")?;
    let options = MigrateOptions {
        from: args.from,
        database: args.database,
        objects,
        master_keys: crate::serve::master_keys()?,
        quota: args.quota,
        scratch: args.scratch_dir,
    };
    let report = anyfs_server::migrate(&options, &mut show).map_err(|e| e.to_string())?;
    let mut total = Counts::default();
    for (_, counts) in &report.accounts {
        total.files += counts.files;
        total.dirs += counts.dirs;
        total.symlinks += counts.symlinks;
        total.bytes += counts.bytes;
    }
    println!(
        "{}: {} accounts ({}), {} agents, {} executions, {} audit records carried into their \
         accounts' chains; every file's SHA-256, every registry row and every carried record \
         match the source, and the database's audit chains verify ({} records)",
        if report.written == 0 {
            "already migrated, checked again"
        } else {
            "migrated and checked"
        },
        report.accounts.len(),
        summary(&total),
        report.agents,
        report.executions,
        report.audit_records,
        report.audit_verified
    );
    Ok(())
}
