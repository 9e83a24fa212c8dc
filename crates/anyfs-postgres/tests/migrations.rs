//! Versioned migrations against a real PostgreSQL server: applied once, in
//! order, by whichever of several starting nodes gets there first, and
//! refused when the database and the build disagree.

use anyfs_postgres::{Database, DbError, Migration};
use anyfs_services::{postgres, require};

const NOTES: &[Migration] = &[
    Migration::new(
        1,
        "notes",
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
    ),
    Migration::new(
        2,
        "notes_author",
        "ALTER TABLE notes ADD COLUMN author text NOT NULL DEFAULT ''",
    ),
];

fn recorded(db: &Database, component: &'static str) -> Vec<(i32, String)> {
    db.run(|client| async move {
        let rows = client
            .query(
                "SELECT version, name FROM anyfs_migrations WHERE component = $1 ORDER BY version",
                &[&component],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    })
    .expect("reads the ledger")
}

#[test]
fn migrations_apply_once_in_order_and_are_recorded() {
    let server = require!(postgres());
    let db = Database::connect(&server.fresh_database()).expect("connects");
    assert_eq!(db.migrate("notes", &NOTES[..1]).expect("first"), vec![1]);
    assert_eq!(db.migrate("notes", NOTES).expect("second"), vec![2]);
    assert_eq!(
        db.migrate("notes", NOTES).expect("up to date"),
        Vec::<i32>::new()
    );
    assert_eq!(
        recorded(&db, "notes"),
        vec![(1, "notes".to_owned()), (2, "notes_author".to_owned())]
    );
    db.run(|client| async move {
        client
            .execute("INSERT INTO notes (body, author) VALUES ('hi', 'me')", &[])
            .await?;
        Ok(())
    })
    .expect("the migrated schema is in place");
    // Components are independent.
    assert_eq!(
        db.migrate("other", &[Migration::new(1, "t", "CREATE TABLE t (x int)")])
            .expect("other"),
        vec![1]
    );
}

#[test]
fn nodes_starting_together_apply_each_migration_once() {
    let server = require!(postgres());
    let url = server.fresh_database();
    let nodes: Vec<Database> = (0..4)
        .map(|_| Database::connect(&url).expect("connects"))
        .collect();
    let applied: Vec<Vec<i32>> = std::thread::scope(|scope| {
        let runs: Vec<_> = nodes
            .iter()
            .map(|db| scope.spawn(move || db.migrate("notes", NOTES)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("no panic").expect("migrates"))
            .collect()
    });
    // `CREATE TABLE` without `IF NOT EXISTS`: a second application would
    // have failed. Exactly one node applied both.
    let mut all: Vec<i32> = applied.concat();
    all.sort_unstable();
    assert_eq!(all, vec![1, 2], "{applied:?}");
    assert_eq!(recorded(&nodes[0], "notes").len(), 2);
}

#[test]
fn a_failing_migration_applies_nothing() {
    let server = require!(postgres());
    let db = Database::connect(&server.fresh_database()).expect("connects");
    let broken = [
        NOTES[0],
        Migration::new(2, "broken", "ALTER TABLE nowhere ADD COLUMN x int"),
    ];
    let error = db.migrate("notes", &broken).expect_err("migration 2 fails");
    assert!(
        matches!(&error, DbError::Migration { version: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("broken"), "{error}");
    // Migration 1 was rolled back with it: applying the good list works.
    assert_eq!(db.migrate("notes", NOTES).expect("good list"), vec![1, 2]);
}

#[test]
fn a_database_that_disagrees_with_the_build_is_refused() {
    let server = require!(postgres());
    let db = Database::connect(&server.fresh_database()).expect("connects");
    db.migrate("notes", NOTES).expect("migrates");

    let renamed = [NOTES[0], Migration::new(2, "something_else", "SELECT 1")];
    let error = db.migrate("notes", &renamed).expect_err("renamed");
    assert!(error.to_string().contains("something_else"), "{error}");

    let older_build = &NOTES[..1];
    let error = db
        .migrate("notes", older_build)
        .expect_err("the database is newer");
    assert!(error.to_string().contains("newer anyfs"), "{error}");

    let gap = [NOTES[0], Migration::new(3, "gap", "SELECT 1")];
    let error = db
        .migrate("notes", &gap)
        .expect_err("versions must count up");
    assert!(
        matches!(error, DbError::Migration { version: 3, .. }),
        "{error}"
    );
}
