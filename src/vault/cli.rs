//! `cortex-gateway vault rotate` and `vault status`: run next to running gateways, on the
//! same configuration and store.

use std::sync::Arc;

use super::Vault;
use crate::config::Config;
use crate::store::VaultStore;

/// Exit codes: 0 done, 2 configuration unusable (no vault key), 3 store failed.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// No vault key, or the configuration cannot describe the store.
    pub const CONFIG: u8 = 2;
    /// The store failed.
    pub const STORE: u8 = 3;
}

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-seal every record under the newest key.
    Rotate,
    /// Records per key id.
    Status,
}

/// Runs `action` against the store of `config`; prints the outcome.
pub fn run_cli(config: &Config, action: Action) -> u8 {
    let store = match crate::store::open(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let vault = match Vault::from_config(
        &config.vault,
        store as Arc<dyn VaultStore>,
        &config.canonical_uri(),
    ) {
        Ok(Some(v)) => v,
        Ok(None) => {
            eprintln!(
                "error: no vault key is configured (vault.key / CORTEX_VAULT_KEY, vault.keys)"
            );
            return exit::CONFIG;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return exit::STORE;
        }
    };
    runtime.block_on(async {
        let newest = vault.ring().newest_id().to_string();
        if action == Action::Rotate {
            match vault.rotate().await {
                Ok(r) => println!(
                    "re-sealed {} grant(s) and {} client secret(s) under key `{newest}`; {} record(s) could not be opened (see the log)",
                    r.grants, r.clients, r.unreadable
                ),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::STORE;
                }
            }
        }
        match vault.status().await {
            Ok(counts) => {
                println!("newest key: {newest}");
                if counts.is_empty() {
                    println!("no records");
                }
                for c in counts {
                    println!(
                        "key {}: {} grant(s), {} client secret(s){}",
                        c.key_id,
                        c.grants,
                        c.clients,
                        if c.key_id == newest { " (newest)" } else { "" }
                    );
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::STORE
            }
        }
    })
}
