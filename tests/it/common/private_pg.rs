//! A PostgreSQL server of the test's own (initdb into a temp dir, `pg_ctl` on a free port),
//! which the test may stop and start again: the shared server on 5432 is never touched.
//! The binaries come from `CORTEX_TEST_PG_BIN` or `/usr/lib/postgresql/15/bin`. PostgreSQL
//! refuses to run as root, so as root the server runs as the `postgres` user (`runuser`).

use std::path::PathBuf;
use std::process::{Command, Output};

/// A private PostgreSQL server; stopped (immediately) when dropped.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
}

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var("CORTEX_TEST_PG_BIN")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(name)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool (as `postgres` when we are root); panics with its output on failure.
fn run(tool: &str, args: &[String]) -> Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(tool));
        c
    } else {
        Command::new(bin(tool))
    };
    cmd.args(args).env_remove("PGDATA").env_remove("PGPORT");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin(tool).display()));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PrivatePg {
    /// `initdb` (trust, user `postgres`) and start on a free port.
    pub fn start() -> PrivatePg {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the data dir to postgres");
        }
        run(
            "initdb",
            &[
                "-D".into(),
                dir.path().join("data").display().to_string(),
                "-A".into(),
                "trust".into(),
                "-U".into(),
                "postgres".into(),
                "--no-sync".into(),
            ],
        );
        let pg = PrivatePg {
            dir,
            port: super::free_port(),
        };
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the stopped server again (same data, same port); waits until it accepts.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(
            "pg_ctl",
            &[
                "-D".into(),
                self.data(),
                "-o".into(),
                options,
                "-l".into(),
                self.dir.path().join("server.log").display().to_string(),
                "-w".into(),
                "start".into(),
            ],
        );
    }

    /// Stops it (`-m fast`: open connections are ended, as in a real outage); waits.
    pub fn stop(&self) {
        run(
            "pg_ctl",
            &[
                "-D".into(),
                self.data(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "stop".into(),
            ],
        );
    }

    /// A URL for the gateway (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same as a key=value connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin("pg_ctl"));
            c
        } else {
            Command::new(bin("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}
