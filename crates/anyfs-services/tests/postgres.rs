//! The throw-away PostgreSQL cluster: it serves fresh databases over
//! password-checked TCP, and it goes away with the test process, even one
//! killed with SIGKILL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child process of `killed_test_process_leaves_no_server`.
const CHILD: &str = "ANYFS_SERVICES_TEST_CHILD";

fn psql(url: &str, sql: &str) -> std::process::Output {
    let postgres = anyfs_services::postgres().expect("cluster");
    Command::new(postgres.bin_dir().join("psql"))
        .args(["-X", "-q", "-t", "-A", "-d", url, "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql runs")
}

#[test]
fn fresh_databases_are_distinct_and_reachable_with_the_password() {
    let postgres = anyfs_services::require!(anyfs_services::postgres());
    let first = postgres.fresh_database();
    let second = postgres.fresh_database();
    assert_ne!(first, second);
    assert!(first.starts_with(&format!("postgres://{}:", postgres.user())));
    assert!(first.contains(&format!("@127.0.0.1:{}/", postgres.port())));

    let created = psql(&first, "CREATE TABLE t (x int); INSERT INTO t VALUES (7);");
    assert!(created.status.success(), "{created:?}");
    let read = psql(&first, "SELECT x FROM t");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "7");
    // The second database is empty: the table lives in the first only.
    let missing = psql(&second, "SELECT x FROM t");
    assert!(!missing.status.success());
}

#[test]
fn a_wrong_password_is_refused() {
    let postgres = anyfs_services::require!(anyfs_services::postgres());
    let url = postgres
        .fresh_database()
        .replace(postgres.password(), "not-the-password");
    let refused = psql(&url, "SELECT 1");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("password authentication failed"),
        "{refused:?}"
    );
}

#[test]
fn debug_output_leaves_out_the_password() {
    let postgres = anyfs_services::require!(anyfs_services::postgres());
    assert!(!format!("{postgres:?}").contains(postgres.password()));
}

/// Runs only in the child process: starts the cluster, tells the parent
/// where it is, and waits to be killed.
#[test]
fn child_holding_a_cluster() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let postgres = anyfs_services::postgres().expect("cluster in the child");
    println!(
        "CLUSTER {} {}",
        postgres.port(),
        postgres.log_path().parent().expect("root").display()
    );
    std::thread::sleep(Duration::from_secs(120));
}

/// Kills the child process however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_test_process_leaves_no_server() {
    let _ = anyfs_services::require!(anyfs_services::postgres());
    let mut child = Child(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "child_holding_a_cluster",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child test process"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let announced = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find_map(|line| Some(line.split_once("CLUSTER ")?.1.to_owned()))
        .expect("the child announces its cluster");
    let (port, root) = announced.split_once(' ').expect("port and directory");
    let port: u16 = port.parse().expect("port");
    let root = std::path::PathBuf::from(root.trim());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(root.exists());

    child.0.kill().expect("SIGKILL the child");
    child.0.wait().expect("reap the child");

    let deadline = Instant::now() + Duration::from_secs(30);
    while (root.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!root.exists(), "{} is still there", root.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a server still listens on {port}"
    );
}
