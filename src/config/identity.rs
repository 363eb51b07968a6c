//! The checks of what each backend receives with user calls (`backends[].identity`,
//! `vault_provider`, the static `bearer` / `headers`, `static_catalog`): the combinations that
//! cannot work are refused with the key to change, and the explicit `passthrough` of a
//! caller's own token to a native MCP server is allowed with a warning (the MCP specification
//! forbids token passthrough to another server; only a first-party server may take it).

use super::validate::{pik, Findings};
use super::{BackendConfig, BackendKindConfig, Config, IdentityMode};

fn mode_name(m: IdentityMode) -> &'static str {
    match m {
        IdentityMode::Passthrough => "passthrough",
        IdentityMode::Mint => "mint",
        IdentityMode::Exchange => "exchange",
        IdentityMode::Vault => "vault",
        IdentityMode::None => "none",
    }
}

fn providers(config: &Config) -> String {
    let ids: Vec<String> = config
        .vault
        .providers
        .iter()
        .map(|p| format!("`{}`", p.id))
        .collect();
    if ids.is_empty() {
        "no provider is configured under vault.providers".into()
    } else {
        format!("vault.providers has {}", ids.join(", "))
    }
}

fn native(b: &BackendConfig) -> bool {
    b.kind != BackendKindConfig::Contract
}

/// The checks (called by the configuration's validation).
pub(crate) fn check(config: &Config, f: &mut Findings) {
    for (i, b) in config.backends.iter().enumerate() {
        check_backend(config, i, b, f);
    }
}

fn check_backend(config: &Config, i: usize, b: &BackendConfig, f: &mut Findings) {
    let at = |key: &str| pik(&["backends"], i, key);
    let mode = b.identity_mode();
    match (b.identity, &b.vault_provider) {
        (Some(IdentityMode::Vault), None) => f.error(
            at("identity"),
            format!(
                "`vault` sends each user's own linked account, so it needs `vault_provider` naming the provider to link ({})",
                providers(config)
            ),
        ),
        (Some(m), Some(p)) if m != IdentityMode::Vault => f.error(
            at("identity"),
            format!(
                "`{}` cannot go with `vault_provider: {p}`: a backend naming a vault provider receives each user's own linked token; remove `identity` (or write `identity: vault`), or remove `vault_provider`",
                mode_name(m)
            ),
        ),
        _ => {}
    }
    if b.kind == BackendKindConfig::Stdio && mode != IdentityMode::None {
        let key = if b.identity.is_some() {
            "identity"
        } else {
            "vault_provider"
        };
        f.error(
            at(key),
            format!(
                "a `kind: stdio` server receives no Authorization header, so identity `{}` cannot apply: give the server its credential through `env` (e.g. API_TOKEN: ${{API_TOKEN}}), or run it as `kind: mcp`",
                mode_name(mode)
            ),
        );
    }
    if mode == IdentityMode::Vault && b.kind == BackendKindConfig::Mcp {
        let header = b
            .headers
            .keys()
            .find(|k| k.eq_ignore_ascii_case("authorization"));
        if b.bearer.is_some() {
            f.error(
                at("bearer"),
                "a static bearer cannot go with a vault provider: each user call carries the user's own linked token (and discovery the provider's catalog_sub's, or static_catalog); remove `bearer`",
            );
        }
        if let Some(h) = header {
            f.error(
                at("headers"),
                format!("`{h}` cannot be a static header of a backend with a vault provider: each user call carries the user's own linked token; remove it"),
            );
        }
    }
    if native(b) && b.identity == Some(IdentityMode::Passthrough) {
        f.warn(
            at("identity"),
            format!(
                "`passthrough` hands each caller's own gateway token to the MCP server of `{}`; the MCP specification forbids token passthrough to another server: keep it only for a first-party server in the gateway's trust domain that checks the gateway's audience, else use `mint`, `exchange` or `vault`",
                b.id
            ),
        );
    }
    if native(b) && mode == IdentityMode::Vault && b.static_catalog.is_none() {
        if let Some(p) = b
            .vault_provider
            .as_ref()
            .and_then(|id| config.vault.providers.iter().find(|p| &p.id == id))
        {
            let sub = p.catalog_sub.as_deref().map(str::trim).unwrap_or("");
            if sub.is_empty() {
                f.warn(
                    at("vault_provider"),
                    format!(
                        "neither vault.providers[{0}].catalog_sub (CORTEX_MCP_{1}_CATALOG_SUB) nor this backend's static_catalog is set: `{2}` is discovered with its static credential only, and a server that wants a user's token lists nothing, so its tools stay out of the catalog (and nobody is asked to link) until discovery succeeds. Set catalog_sub to a subject that links its account once, or write the tools under static_catalog",
                        p.id,
                        p.id.to_ascii_uppercase().replace('-', "_"),
                        b.id
                    ),
                );
            }
        }
    }
    if let Some(c) = &b.static_catalog {
        if !native(b) {
            f.error(
                at("static_catalog"),
                "`static_catalog` only applies to native backends (`kind: mcp` or `kind: stdio`); a contract backend lists its own catalog",
            );
            return;
        }
        let lists = cortex_filters::vault::StaticLists {
            tools: &c.tools,
            prompts: &c.prompts,
            resources: &c.resources,
            templates: &c.resource_templates,
        };
        let naming = cortex_filters::naming::NamingMode::Prefix;
        match cortex_filters::vault::static_snapshot(
            &b.id,
            naming,
            lists,
            b.scope.as_deref(),
            &b.scopes,
        ) {
            Ok((_, warnings)) => {
                for w in warnings {
                    f.error(
                        at("static_catalog"),
                        format!("{w} (the entry would be left out)"),
                    );
                }
            }
            Err(e) => f.error(at("static_catalog"), e),
        }
    }
}
