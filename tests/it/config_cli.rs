//! The configuration commands of the real binary: `check-config` refuses everything `serve`
//! refuses at start (with the file position and a fix, exit 2), `check-config --diff`, and
//! `config-schema`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Variables of the developer's shell that would change what a file means.
const CLEARED: &[&str] = &[
    "OAUTH_ISSUER",
    "OAUTH_AUDIENCE",
    "OAUTH_JWKS_URL",
    "PORT",
    "HOSTNAME",
    "CORTEX_BACKENDS",
    "CORTEX_TECHNICAL_TOKEN",
    "CORTEX_DEV_BYPASS_TOKEN",
    "CORTEX_DATABASE_URL",
    "NODE_ENV",
    "RUST_LOG",
];

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `serve` on a file that must be refused: it has to exit by itself (it never gets to
/// bind), else it is killed after 30 s and the test fails.
fn serve_refuses(dir: &Path, file: &Path) -> (Option<i32>, String) {
    let mut child = command(dir, &["serve", "--config"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status.code(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve started with {} instead of refusing it",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        command(self.dir.path(), args).output().expect("run")
    }

    /// `check-config` and `serve` both refuse `yaml` with exit code 2, and both name every
    /// expected problem (`file:line:column: key: message` parts).
    fn refused(&self, yaml: &str, expected: &[&str]) {
        let file = self.write("gateway.yaml", yaml);
        let out = self.run(&["check-config", "gateway.yaml"]);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "check-config accepted:\n{yaml}\n{stderr}"
        );
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "check-config: no {needle:?} in:\n{stderr}"
            );
        }
        let (code, serve_stderr) = serve_refuses(self.dir.path(), &file);
        assert_eq!(code, Some(2), "serve:\n{serve_stderr}");
        for needle in expected {
            let needle = needle.replace("gateway.yaml:", &format!("{}:", file.display()));
            assert!(
                serve_stderr.contains(&needle),
                "serve: no {needle:?} in:\n{serve_stderr}"
            );
        }
    }
}

/// A valid base on loopback without authentication; cases append to it (to `auth` too).
const BASE: &str =
    "server:\n  listen: ['127.0.0.1:4871']\ntechnical_token: t\nauth:\n  mode: none\n";

#[test]
fn a_bad_oauth_algorithm_is_refused_with_its_position() {
    Case::new().refused(
        &format!("{BASE}  oauth:\n    algorithms: [RS256, HS256, es384]\n"),
        &[
            "gateway.yaml:7:25: auth.oauth.algorithms[1]: `HS256` is never accepted",
            "gateway.yaml:7:32: auth.oauth.algorithms[2]: `es384` is not an algorithm the gateway verifies; did you mean `ES384`?",
        ],
    );
}

#[test]
fn exchange_without_client_credentials_is_refused() {
    Case::new().refused(
        &format!(
            "{BASE}backends:\n  - id: billing\n    url: http://127.0.0.1:4872\n    identity: exchange\n"
        ),
        &[
            "gateway.yaml:9:15: backends[0].identity: `exchange` (backends `billing`) needs the gateway's own client at the authorization server, but auth.oauth.token_exchange.client_id and client_secret is not set",
        ],
    );
}

const MINT_BACKEND: &str =
    "backends:\n  - id: crm\n    url: http://127.0.0.1:4873\n    identity: mint\n";

#[test]
fn an_unreadable_mint_key_file_is_refused() {
    let case = Case::new();
    case.refused(
        &format!("{BASE}  mint:\n    key_file: missing.pem\n{MINT_BACKEND}"),
        &["gateway.yaml:7:15: auth.mint.key_file: cannot be used to sign minted tokens: mint keys: missing.pem:"],
    );
}

#[test]
fn a_mint_key_file_that_is_not_a_usable_key_is_refused() {
    let case = Case::new();
    // A SEC1 file: the message gives the command that converts it.
    case.write(
        "sec1.pem",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n",
    );
    case.refused(
        &format!("{BASE}  mint:\n    key_file: sec1.pem\n{MINT_BACKEND}"),
        &[
            "gateway.yaml:7:15: auth.mint.key_file: cannot be used to sign minted tokens",
            "openssl pkcs8 -topk8",
        ],
    );
}

#[test]
fn corrupt_generated_mint_keys_are_refused_and_kept() {
    let case = Case::new();
    std::fs::create_dir_all(case.path("state/keys")).unwrap();
    let keys = case.write("state/keys/mint-keys.json", "{\"keys\": [");
    case.refused(
        &format!("{BASE}{MINT_BACKEND}data_dir: state\n"),
        &[
            "gateway.yaml:10:11: data_dir: mint keys: state/keys/mint-keys.json:",
            "never overwritten",
        ],
    );
    assert_eq!(std::fs::read_to_string(keys).unwrap(), "{\"keys\": [");
}

#[test]
fn a_mint_key_of_another_algorithm_than_configured_is_refused() {
    let case = Case::new();
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    case.write("ed.pem", &pem(der.as_ref()));
    case.refused(
        &format!("{BASE}  mint:\n    key_file: ed.pem\n    algorithm: ES256\n{MINT_BACKEND}"),
        &["gateway.yaml:8:16: auth.mint.algorithm: is `ES256` but auth.mint.key_file holds an EdDSA key"],
    );
    // An algorithm the gateway cannot sign with at all.
    case.refused(
        &format!("{BASE}  mint:\n    algorithm: ES512\n{MINT_BACKEND}"),
        &["gateway.yaml:7:16: auth.mint.algorithm: `ES512` cannot sign minted tokens"],
    );
    // The same key with the algorithm left at its default is fine.
    case.write(
        "ok.yaml",
        &format!("{BASE}  mint:\n    key_file: ed.pem\n{MINT_BACKEND}"),
    );
    let out = case.run(&["check-config", "ok.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn the_development_authorization_server_rules_have_positions() {
    let case = Case::new();
    let das = "server:\n  listen: ['127.0.0.1:4874']\nauth:\n  oauth:\n    issuer: http://127.0.0.1:4874\ntechnical_token: t\ndev_authorization_server:\n  enabled: true\n";
    case.refused(
        &format!("{das}  users: [{{name: 'a b'}}]\n  clients:\n    - id: script\n      redirect_uris: ['http://example.com/cb']\n"),
        &[
            "gateway.yaml:9:18: dev_authorization_server.users[0].name: `a b` is not a user name",
            "gateway.yaml:12:23: dev_authorization_server.clients[0].redirect_uris[0]: `http://example.com/cb` is neither https nor http on a loopback host",
        ],
    );
    // Its key file, when present, must be its kind of key.
    case.write("dev.pem", "not a key\n");
    case.refused(
        &format!("{das}  key_file: dev.pem\n"),
        &["gateway.yaml:9:13: dev_authorization_server.key_file: dev.pem is not a PKCS#8 P-256 private key"],
    );
}

#[test]
fn audit_and_storage_settings_are_refused_before_start() {
    let case = Case::new();
    case.refused(
        &format!("{BASE}audit:\n  secret: too-short\nstorage:\n  database_url: 'postgres://u:hunter2@127.0.0.1:5432/db?sslmode=perhaps'\n"),
        &[
            "gateway.yaml:7:11: audit.secret: must be at least 32 characters (it has 9)",
            "gateway.yaml:9:17: storage.database_url: is not a PostgreSQL connection URL",
        ],
    );
    // A generated audit secret that was cut short.
    std::fs::create_dir_all(case.path("store")).unwrap();
    std::fs::write(case.path("store/audit.key"), "abc\n").unwrap();
    case.refused(
        &format!("{BASE}storage:\n  data_dir: store\n"),
        &["gateway.yaml:7:13: storage.data_dir: audit: store/audit.key holds fewer than 32 characters"],
    );
    let out = case.run(&["check-config", "gateway.yaml"]);
    assert!(!text(&out.stderr).contains("hunter2"));
}

#[test]
fn check_config_diff_shows_what_a_reload_would_change() {
    let case = Case::new();
    let running = "server:\n  listen: ['127.0.0.1:4875']\nauth:\n  mode: none\ntechnical_token: t\nbackends:\n  - id: crm\n    url: http://127.0.0.1:4876\n  - id: old\n    url: http://127.0.0.1:4877\n";
    case.write("running.yaml", running);
    case.write(
        "new.yaml",
        &format!(
            "server:\n  listen: ['127.0.0.1:4878']\n  allowed_origins: ['https://app.example.com']\nsessions:\n  secret: {}\nauth:\n  mode: none\ntechnical_token: t\nbackends:\n  - id: crm\n    url: http://127.0.0.1:4879\n  - id: billing\n    url: http://127.0.0.1:4880\n",
            "s".repeat(40)
        ),
    );
    let out = case.run(&["check-config", "--diff", "running.yaml", "new.yaml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("configuration OK: new.yaml\n"),
        "{stdout}"
    );
    assert!(stdout.contains("changes from running.yaml:\n"), "{stdout}");
    for line in [
        "4 changes applied live by a reload:\n",
        "  ~ backends[crm].url: http://127.0.0.1:4876 → http://127.0.0.1:4879\n",
        "  - backends[old] (http://127.0.0.1:4877)\n",
        "  + backends[billing] (http://127.0.0.1:4880)\n",
        "  ~ server.allowed_origins: [] → [https://app.example.com]\n",
        "2 changes need a restart:\n",
        "  ~ server.listen: [127.0.0.1:4875] → [127.0.0.1:4878]  (the listeners are bound at start)\n",
        "  ~ sessions.secret: unset → (hidden)  (open sessions are sealed with the key derived from it)\n",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("sssss"), "secrets are never printed");

    // Nothing changed.
    let out = case.run(&["check-config", "--diff", "running.yaml", "running.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).ends_with("changes from running.yaml:\nno changes\n"));

    // An invalid new file: every problem, exit 2, no diff.
    case.write(
        "bad.yaml",
        &running.replace(
            "technical_token: t\n",
            "technical_token: t\ncatalog:\n  refrsh: 10s\n",
        ),
    );
    let out = case.run(&["check-config", "--diff", "running.yaml", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.yaml:7:3: catalog.refrsh: unknown key `refrsh` in `catalog`; did you mean `refresh`?"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("changes from"));
}

#[test]
fn config_schema_prints_the_published_schema() {
    let case = Case::new();
    let out = case.run(&["config-schema"]);
    assert_eq!(out.status.code(), Some(0));
    let printed = text(&out.stdout);
    let published = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config-schema.json"),
    )
    .expect("docs/config-schema.json");
    assert_eq!(
        printed, published,
        "regenerate with `cortex-gateway config-schema > docs/config-schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    // A file it accepts is one the loader accepts.
    let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
    assert!(validator.is_valid(&serde_json::json!({"catalog": {"refresh": "30s"}})));
    assert!(!validator.is_valid(&serde_json::json!({"catalog": {"refrsh": "30s"}})));
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}
