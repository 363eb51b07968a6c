//! TLS of the running binary, with certificates made at test time by the openssl command
//! line (a test CA and leaf certificates for 127.0.0.1): MCP over HTTP/2 and HTTP/1.1 chosen
//! by ALPN (curl), a renewed certificate taken from disk without a restart, a broken one
//! refused while the served one stays, check-config refusing a key that does not belong to
//! its certificate; and outbound: an HTTPS backend requiring a client certificate (Python's
//! ssl module) reached with the configured CA bundle and client certificate.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BackendSpec, Gateway, TestBackend, TestConfig};

const WAIT: Duration = Duration::from_secs(20);

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A test CA in `dir` (`ca.pem`, `ca.key`).
pub(crate) fn make_ca(dir: &Path) {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Cortex Gateway test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
}

/// A leaf certificate for 127.0.0.1 and localhost named `cn`, signed by the CA of `dir`;
/// returns (certificate, key) paths.
pub(crate) fn make_leaf(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let ext = dir.join(format!("{cn}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write ext file");
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &format!("{cn}.key"),
        "-out",
        &format!("{cn}.csr"),
        "-subj",
        &format!("/CN={cn}"),
    ]));
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        &format!("{cn}.csr"),
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &format!("{cn}.pem"),
        "-days",
        "2",
        "-extfile",
        &format!("{cn}.ext"),
    ]));
    (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")))
}

/// Copies over `to` atomically (a renewal tool's rename).
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).expect("copy");
    std::fs::rename(&tmp, to).expect("rename");
}

/// `curl` over TLS with the test CA: (HTTP version, status, body).
fn curl(ca: &Path, url: &str, http: &str, body: Option<&str>) -> (String, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", http, "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_version} %{http_code}"]);
    if let Some(body) = body {
        cmd.args([
            "-H",
            "content-type: application/json",
            "-H",
            "accept: application/json, text/event-stream",
            "--data-binary",
            body,
        ]);
    }
    cmd.arg(url);
    let out = run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').expect("curl -w tail");
    let (version, status) = tail.split_once(' ').expect("version and status");
    (version.to_owned(), status.to_owned(), body.to_owned())
}

/// The subject of the certificate served on `port`.
fn served_subject(port: u16) -> String {
    // `timeout` bounds a handshake that would hang.
    let out = Command::new("timeout")
        .args([
            "10",
            "openssl",
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

fn tls_config(backend: &TestBackend, tls_port: u16, cert: &Path, key: &Path) -> String {
    TestConfig::new()
        .server("tls:")
        .server(&format!("  listen: [\"127.0.0.1:{tls_port}\"]"))
        .server(&format!("  cert_file: \"{}\"", cert.display()))
        .server(&format!("  key_file: \"{}\"", key.display()))
        .backend("t", &backend.url())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_tls_with_h2_and_h1_and_a_renewed_certificate_without_restart() {
    let pki = tempfile::tempdir().expect("temp dir");
    make_ca(pki.path());
    let (one_cert, one_key) = make_leaf(pki.path(), "gateway-one");
    let (two_cert, two_key) = make_leaf(pki.path(), "gateway-two");
    let cert = pki.path().join("served.pem");
    let key = pki.path().join("served.key");
    install(&one_cert, &cert);
    install(&one_key, &key);
    let ca = pki.path().join("ca.pem");

    let backend = TestBackend::start(BackendSpec::tools(&["echo"], "mcp:t:read")).await;
    let tls_port = common::free_port();
    let gateway = Gateway::start(&tls_config(&backend, tls_port, &cert, &key)).await;
    gateway.wait_ready().await;
    let mcp = format!("https://127.0.0.1:{tls_port}/mcp");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

    // HTTP/2 by ALPN.
    let (version, status, body) = curl(&ca, &mcp, "--http2", Some(list));
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"), "{body}");
    assert!(body.contains("t_echo"), "{body}");
    // HTTP/1.1 by ALPN, on the same listener.
    let (version, status, body) = curl(&ca, &mcp, "--http1.1", Some(list));
    assert_eq!(
        (version.as_str(), status.as_str()),
        ("1.1", "200"),
        "{body}"
    );
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t_echo","arguments":{"message":"over tls"}}}"#;
    let (_, status, body) = curl(&ca, &mcp, "--http2", Some(call));
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("over tls"), "{body}");
    assert_eq!(backend.calls("echo").len(), 1);
    // The plain listener still serves plain HTTP.
    assert_eq!(gateway.get_json("/healthz").await.0, 200);
    assert!(served_subject(tls_port).contains("gateway-one"));

    // A half-written renewal (garbage certificate) is refused; the served one stays.
    std::fs::write(
        pki.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    install(&pki.path().join("garbage.pem"), &cert);
    common::eventually(WAIT, "the broken certificate refused", || async {
        let r = gateway.readyz().await.1["reloads"].clone();
        (r["certificateErrors"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    assert!(served_subject(tls_port).contains("gateway-one"));
    let (_, status, _) = curl(&ca, &mcp, "--http2", Some(list));
    assert_eq!(status, "200");

    // The renewed pair is served without a restart.
    install(&two_key, &key);
    install(&two_cert, &cert);
    common::eventually(WAIT, "the renewed certificate served", || async {
        served_subject(tls_port)
            .contains("gateway-two")
            .then_some(())
    })
    .await;
    let (version, status, _) = curl(&ca, &mcp, "--http2", Some(list));
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"));
    assert!(
        gateway.logs().contains("TLS certificate reloaded"),
        "{}",
        gateway.logs()
    );

    // The official Python SDK over TLS, over HTTP/1.1 and over HTTP/2 (ALPN), trusting only the
    // test CA, against the renewed certificate; every response's HTTP version is reported.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_tls.py");
    for (alpn, expected) in [("h1", "HTTP/1.1"), ("h2", "HTTP/2")] {
        let stdout = common::interop::run_python_script(
            vec![
                script.to_string(),
                mcp.clone(),
                ca.display().to_string(),
                "t_echo".into(),
                alpn.into(),
            ],
            gateway.dir().to_owned(),
            Duration::from_secs(60),
        )
        .await;
        let out: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}"));
        assert!(
            out["tools"]
                .as_array()
                .is_some_and(|t| t.contains(&serde_json::json!("t_echo"))),
            "{out}"
        );
        assert_eq!(out["isError"], false, "{out}");
        assert!(
            out["text"]
                .as_str()
                .unwrap_or("")
                .contains("python over tls"),
            "{out}"
        );
        assert_eq!(out["httpVersions"], serde_json::json!([expected]), "{out}");
    }
}

#[test]
fn check_config_refuses_a_key_of_another_certificate() {
    let pki = tempfile::tempdir().expect("temp dir");
    make_ca(pki.path());
    let (one_cert, _) = make_leaf(pki.path(), "gateway-one");
    let (_, two_key) = make_leaf(pki.path(), "gateway-two");
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:3213\"]\n  tls:\n    listen: [\"127.0.0.1:3443\"]\n    cert_file: \"{}\"\n    key_file: \"{}\"\nauth:\n  mode: none\n",
        one_cert.display(),
        two_key.display()
    );
    let file = pki.path().join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"))
        .arg("check-config")
        .arg(&file)
        .env_clear()
        .output()
        .expect("check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls.cert_file") || stderr.contains("cert_file"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot be served"), "{stderr}");
}

/// The mTLS contract backend of tests/python/tls_contract_backend.py; killed on drop.
struct MtlsBackend {
    child: std::process::Child,
    port: u16,
}

impl MtlsBackend {
    fn start(cert: &Path, key: &Path, client_ca: &Path) -> MtlsBackend {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls_contract_backend.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([cert, key, client_ca])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tls_contract_backend.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the backend prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("port line: {line:?}"));
        MtlsBackend { child, port }
    }
}

impl Drop for MtlsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn outbound_config(port: u16, lines: &[String]) -> String {
    let mut c = TestConfig::new().backend("m", &format!("https://127.0.0.1:{port}"));
    if !lines.is_empty() {
        c = c.top("outbound:");
        for l in lines {
            c = c.top(&format!("  {l}"));
        }
    }
    c.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_verified_with_the_ca_bundle_and_shown_the_client_certificate() {
    let pki = tempfile::tempdir().expect("temp dir");
    make_ca(pki.path());
    let (server_cert, server_key) = make_leaf(pki.path(), "backend-server");
    let (client_cert, client_key) = make_leaf(pki.path(), "gateway-client");
    let ca = pki.path().join("ca.pem");
    let backend = MtlsBackend::start(&server_cert, &server_key, &ca);
    let ca_line = format!("ca_file: \"{}\"", ca.display());
    let cert_line = format!("client_cert_file: \"{}\"", client_cert.display());
    let key_line = format!("client_key_file: \"{}\"", client_key.display());

    // CA bundle and client certificate: discovery and calls work, and the backend saw the
    // gateway's certificate.
    let gateway = Gateway::start(&outbound_config(
        backend.port,
        &[ca_line.clone(), cert_line.clone(), key_line.clone()],
    ))
    .await;
    gateway.wait_ready().await;
    let status = gateway.backend_status("m").await;
    assert_eq!(status["healthy"], true, "{status}\n{}", gateway.logs());
    let result = gateway
        .client()
        .call_tool("m_whoami_cert", serde_json::json!({}))
        .await;
    assert!(
        result.to_string().contains("gateway-client"),
        "the backend saw the client certificate: {result}"
    );
    drop(gateway);

    // Without the client certificate the backend refuses the handshake.
    let gateway = Gateway::start(&outbound_config(backend.port, &[ca_line])).await;
    gateway.wait_ready().await;
    let status = gateway.backend_status("m").await;
    assert_eq!(status["healthy"], false, "{status}");
    drop(gateway);

    // Without the CA bundle the backend's certificate is not trusted.
    let gateway = Gateway::start(&outbound_config(backend.port, &[cert_line, key_line])).await;
    gateway.wait_ready().await;
    let status = gateway.backend_status("m").await;
    assert_eq!(status["healthy"], false, "{status}");
}
