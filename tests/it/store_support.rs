//! Test support for the store and the audit trail: a database of each kind that tests can
//! open several handles on (a second replica, a restart) and tamper with directly.
//!
//! PostgreSQL: `CORTEX_TEST_DATABASE_URL` or `host=127.0.0.1 port=5432 user=postgres
//! dbname=test`; each [`TestDb`] gets a schema of its own (unique per process, counter
//! and random suffix), dropped when it is dropped, so parallel tests and repeated runs
//! never collide. An unreachable server fails the test: PostgreSQL is part of the
//! development and CI machines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use cortex_gateway::store::{PostgresStore, SqliteStore, Store};

/// Base connection string of the test PostgreSQL server.
pub fn pg_base() -> String {
    std::env::var("CORTEX_TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database for one test.
pub struct TestDb {
    pub kind: Kind,
    /// SQLite: the temp dir holding the file.
    dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the schema.
    schema: Option<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// A fresh database of `kind`.
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => TestDb {
                kind,
                dir: Some(tempfile::tempdir().expect("temp dir")),
                schema: None,
            },
            Kind::Postgres => {
                let schema = format!(
                    "cgw_test_{}_{}_{:08x}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                pg_exec_base(&format!("CREATE SCHEMA {schema}")).await;
                TestDb {
                    kind,
                    dir: None,
                    schema: Some(schema),
                }
            }
        }
    }

    /// SQLite: the data directory (the file is `cortex-gateway.db` inside).
    pub fn data_dir(&self) -> &Path {
        self.dir.as_ref().expect("sqlite test db").path()
    }

    /// SQLite: the database file.
    pub fn sqlite_file(&self) -> PathBuf {
        cortex_gateway::store::sqlite_path(self.data_dir())
    }

    /// PostgreSQL: the schema name.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().expect("postgres test db")
    }

    /// PostgreSQL: a connection string whose `search_path` is this test's schema.
    pub fn pg_url(&self) -> String {
        format!("{} options='-c search_path={}'", pg_base(), self.schema())
    }

    /// The same, as a URL (for YAML and `CORTEX_DATABASE_URL`).
    pub fn pg_uri(&self) -> String {
        let base = std::env::var("CORTEX_TEST_DATABASE_URI")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.schema())
    }

    /// A new store handle on this database (another replica, or the same process after a
    /// restart).
    pub fn open(&self) -> Arc<dyn Store> {
        match self.kind {
            Kind::Sqlite => Arc::new(SqliteStore::open(self.sqlite_file())),
            Kind::Postgres => Arc::new(PostgresStore::new(&self.pg_url()).expect("postgres store")),
        }
    }

    /// Runs SQL directly on the database, behind the store's back (tampering).
    pub async fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_file()).expect("open sqlite");
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .expect("busy timeout");
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Kind::Postgres => {
                let client = pg_connect(&self.pg_url()).await;
                client
                    .batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// One integer from a query, or `None` if it fails (e.g. the tables do not exist yet).
    pub async fn try_query_i64(&self, sql: &str) -> Option<i64> {
        match self.kind {
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_file()).ok()?;
                conn.query_row(sql, [], |r| r.get(0)).ok()
            }
            Kind::Postgres => {
                let client = pg_connect(&self.pg_url()).await;
                client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
            }
        }
    }

    /// One integer from a query run directly on the database.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        match self.kind {
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_file()).expect("open sqlite");
                conn.query_row(sql, [], |r| r.get(0))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Kind::Postgres => {
                let client = pg_connect(&self.pg_url()).await;
                client
                    .query_one(sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .get(0)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Async cleanup from a sync drop: a short-lived thread with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok((client, conn)) =
                        tokio_postgres::connect(&pg_base(), tokio_postgres::NoTls).await
                    {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is needed by this test (CORTEX_TEST_DATABASE_URL overrides): {e}")
        });
    tokio::spawn(conn);
    client
}

async fn pg_exec_base(sql: &str) {
    let client = pg_connect(&pg_base()).await;
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
