//! SQLite is built the way `.cargo/config.toml` asks: without the options
//! that put a process-wide mutex on every page fetch and every allocation.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

fn compile_options() -> Vec<String> {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
    stmt.query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn page_caches_are_per_connection_and_allocations_are_not_counted() {
    let options = compile_options();
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "SQLite shares one page cache behind a global mutex: {options:?}"
    );
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "SQLite counts every allocation behind a global mutex: {options:?}"
    );
    assert!(
        options.iter().any(|o| o == "THREADSAFE=1"),
        "SQLite must stay safe for many threads: {options:?}"
    );
}
