//! Checks that read the files a configuration points at, as `serve` would read them at start:
//! the signing key of minted backend tokens (a configured key file, or the generated keys
//! kept under the data directory), the development authorization server's key, and the
//! generated audit secret. Nothing is created or written here: a missing file that `serve`
//! would generate is fine, a present one that `serve` would refuse is an error.

use std::path::{Path, PathBuf};

use crate::config::checks::{p, Findings, Seg};
use crate::config::{Config, IdentityMode};

/// Runs every check. `set_in_file(path)` tells whether a key is written in the file or the
/// environment (rather than left at its default).
pub(crate) fn check(config: &Config, set_in_file: &dyn Fn(&[Seg]) -> bool, f: &mut Findings) {
    if super::startup::uses(config, IdentityMode::Mint) {
        check_mint_keys(config, set_in_file, f);
    }
    if config.dev_authorization_server.enabled {
        check_dev_key(config, f);
    }
    if config.audit.secret.is_none() {
        check_audit_key(config, f);
    }
    let o = &config.outbound;
    if let Some(ca) = o.ca_file.as_deref().filter(|c| !c.trim().is_empty()) {
        if let Err(e) = crate::tls::check_ca_file(ca) {
            f.error(
                p(&["outbound", "ca_file"]),
                format!("is not a usable PEM CA bundle: {e}"),
            );
        }
    }
    if let (Some(cert), Some(key)) = (
        o.client_cert_file
            .as_deref()
            .filter(|c| !c.trim().is_empty()),
        o.client_key_file
            .as_deref()
            .filter(|c| !c.trim().is_empty()),
    ) {
        if let Err(e) = crate::tls::check_files(cert, key) {
            f.error(
                p(&["outbound", "client_cert_file"]),
                format!("the client certificate and key cannot be used: {e}"),
            );
        }
    }
    if let Some(tls) = &config.server.tls {
        if !tls.cert_file.trim().is_empty() && !tls.key_file.trim().is_empty() {
            if let Err(e) = crate::tls::check_files(&tls.cert_file, &tls.key_file) {
                f.error(
                    p(&["server", "tls", "cert_file"]),
                    format!("the TLS certificate and key cannot be served: {e}"),
                );
            }
        }
    }
}

/// The key that points at the data directory, for positions: `storage.data_dir` when it
/// moves the store, else the top-level `data_dir`.
fn data_dir_key(config: &Config, storage: bool) -> Vec<Seg> {
    if storage && config.storage.data_dir.is_some() {
        p(&["storage", "data_dir"])
    } else {
        p(&["data_dir"])
    }
}

fn check_mint_keys(config: &Config, set_in_file: &dyn Fn(&[Seg]) -> bool, f: &mut Findings) {
    let mint = &config.auth.mint;
    match &mint.key_file {
        Some(file) => match crate::auth::mint::key_file_algorithm(Path::new(file)) {
            Err(e) => f.error(
                p(&["auth", "mint", "key_file"]),
                format!("cannot be used to sign minted tokens: {e}"),
            ),
            Ok(alg) => {
                let algorithm_path = p(&["auth", "mint", "algorithm"]);
                if alg.as_str() != mint.algorithm.trim() && set_in_file(&algorithm_path) {
                    f.error(
                        algorithm_path,
                        format!(
                            "is `{}` but auth.mint.key_file holds an {} key: a key file decides the algorithm, so write `algorithm: {}` or leave the key out",
                            mint.algorithm, alg, alg
                        ),
                    );
                }
            }
        },
        None => {
            // A data directory that is a file, or unreadable keys, fail here as at start.
            if let Err(e) = crate::auth::mint::check_generated_keys(&config.data_dir()) {
                f.error(data_dir_key(config, false), e.to_string());
            }
        }
    }
}

/// The configured or default key file of the development authorization server: present
/// and a P-256 key, or absent and creatable.
fn check_dev_key(config: &Config, f: &mut Findings) {
    let configured = config.dev_authorization_server.key_file.as_deref();
    if configured.is_some_and(|k| k.trim().is_empty()) {
        return; // reported by the startup checks
    }
    let path = configured
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::dev_as::default_key_file(config));
    let key = if configured.is_some() {
        p(&["dev_authorization_server", "key_file"])
    } else {
        data_dir_key(config, false)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let usable = crate::dev_as::keys::pem_decode(&text)
                .and_then(|der| crate::dev_as::SigningKey::from_pkcs8(&der).map(drop));
            if let Err(reason) = usable {
                f.error(
                    key,
                    format!(
                        "{} is not a PKCS#8 P-256 private key in PEM ({reason}); fix it, or delete it to have a new key generated",
                        path.display()
                    ),
                );
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            if let Some(blocker) = not_creatable(&path) {
                f.error(
                    key,
                    format!(
                        "{} cannot be created: {} is not a directory",
                        path.display(),
                        blocker.display()
                    ),
                );
            }
        }
        Err(e) => f.error(key, format!("cannot read {}: {e}", path.display())),
    }
}

/// The generated audit secret, when it exists: readable and long enough.
fn check_audit_key(config: &Config, f: &mut Findings) {
    let path = config.storage_dir().join(crate::audit::keys::KEY_FILE);
    // A missing file is generated at start; `load` without `create` reads only.
    if std::fs::symlink_metadata(&path).is_err() {
        return;
    }
    if let Err(e) = crate::audit::AuditKeys::load(config, false) {
        f.error(data_dir_key(config, true), e.to_string());
    }
}

/// The first existing ancestor of `path` when it is not a directory (so `path` cannot be
/// created); `None` when it can be, as far as the file system's shape tells.
fn not_creatable(path: &Path) -> Option<PathBuf> {
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        if dir.as_os_str().is_empty() {
            return None;
        }
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => return None,
            Ok(_) => return Some(dir.to_path_buf()),
            Err(_) => ancestor = dir.parent(),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::MapEnv;
    use crate::preflight::load_str;

    fn issues(yaml: &str) -> String {
        match load_str(yaml, "gw.yaml", &MapEnv::default()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn pkcs8_pem(der: &[u8]) -> String {
        crate::dev_as::keys::pem_encode(der)
    }

    #[test]
    fn mint_key_files_are_read_as_serve_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let mint_backend =
            "backends:\n  - id: crm\n    url: http://127.0.0.1:9\n    identity: mint\n";
        let base = format!("auth:\n  mode: none\n{mint_backend}data_dir: {d}\n");

        // Missing key file.
        let e = issues(&format!(
            "auth:\n  mode: none\n  mint:\n    key_file: {d}/none.pem\n{mint_backend}data_dir: {d}\n"
        ));
        assert!(
            e.contains("auth.mint.key_file: cannot be used to sign minted tokens"),
            "{e}"
        );
        assert!(e.contains("none.pem"), "{e}");

        // Not a key.
        std::fs::write(dir.path().join("junk.pem"), "hello").unwrap();
        let yaml = format!("auth:\n  mode: none\n  mint:\n    key_file: {d}/junk.pem\n{mint_backend}data_dir: {d}\n");
        let e = issues(&yaml);
        assert!(
            e.contains("gw.yaml:4:15: auth.mint.key_file: cannot be used to sign minted tokens")
                && e.contains("PKCS#8 PEM expected"),
            "{e}"
        );

        // A P-256 key with `algorithm: EdDSA` written in the file: contradiction.
        let rng = ring::rand::SystemRandom::new();
        let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        std::fs::write(dir.path().join("ec.pem"), pkcs8_pem(der.as_ref())).unwrap();
        let yaml = format!("auth:\n  mode: none\n  mint:\n    key_file: {d}/ec.pem\n    algorithm: EdDSA\n{mint_backend}data_dir: {d}\n");
        let e = issues(&yaml);
        assert!(
            e.contains("gw.yaml:5:16: auth.mint.algorithm: is `EdDSA` but auth.mint.key_file holds an ES256 key"),
            "{e}"
        );
        // Left at its default, the key decides.
        let yaml = format!(
            "auth:\n  mode: none\n  mint:\n    key_file: {d}/ec.pem\n{mint_backend}data_dir: {d}\n"
        );
        assert_eq!(issues(&yaml), "");

        // `key_file: ""` means unset, like every optional text: generated keys.
        let yaml = format!(
            "auth:\n  mode: none\n  mint:\n    key_file: ''\n{mint_backend}data_dir: {d}\n"
        );
        assert_eq!(issues(&yaml), "");

        // Without a backend using `mint`, the key file is not read (as at start).
        let yaml = format!("auth:\n  mode: none\n  mint:\n    key_file: {d}/none.pem\n");
        assert_eq!(issues(&yaml), "");

        // Generated keys: a corrupt store is refused, never overwritten.
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/mint-keys.json"), "{not json").unwrap();
        let e = issues(&base);
        assert!(
            e.contains("data_dir: mint keys:") && e.contains("mint-keys.json"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keys/mint-keys.json")).unwrap(),
            "{not json"
        );
    }

    #[test]
    fn the_dev_authorization_server_key_and_the_audit_secret_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let das = "server:\n  listen: ['127.0.0.1:4555']\nauth:\n  oauth:\n    issuer: http://127.0.0.1:4555\ndev_authorization_server:\n  enabled: true\n";
        assert_eq!(issues(&format!("{das}data_dir: {d}\n")), "");
        assert!(!dir.path().join("keys").exists(), "nothing is created");

        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/dev-authorization-server.pem"), "x").unwrap();
        let e = issues(&format!("{das}data_dir: {d}\n"));
        assert!(
            e.contains("data_dir: ") && e.contains("is not a PKCS#8 P-256 private key"),
            "{e}"
        );

        std::fs::write(dir.path().join("file"), "").unwrap();
        let e = issues(&format!("{das}  key_file: {d}/file/key.pem\n"));
        assert!(
            e.contains("dev_authorization_server.key_file: ") && e.contains("is not a directory"),
            "{e}"
        );

        std::fs::write(dir.path().join("audit.key"), "short\n").unwrap();
        let e = issues(&format!("auth:\n  mode: none\nstorage:\n  data_dir: {d}\n"));
        assert!(
            e.contains("gw.yaml:4:13: storage.data_dir: audit:")
                && e.contains("audit.key holds fewer than 32 characters"),
            "{e}"
        );
        let e = issues(&format!(
            "auth:\n  mode: none\naudit:\n  secret: {}\nstorage:\n  data_dir: {d}\n",
            "s".repeat(32)
        ));
        assert_eq!(e, "", "a configured secret does not read the file");
    }
}
