//! The house rules of `src/`, checked on the sources themselves (docs/architecture.md,
//! "House rules"): every module of `src/` sits on a floor, and a module may only name
//! modules on a floor below its own. That makes an import circle impossible and keeps the
//! features (builtins, upstream, credentials, auth, audit, sessions, store) from reaching up
//! to the edge (`mcp/`, `gateway`, `server`) or to the whole state.
//!
//! A new module gets a floor in [`FLOORS`]; the test fails, naming the file, the line and the
//! import, when a module names one on its own floor or above.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every module of `src/` (a file `src/<name>.rs` or a folder `src/<name>/`) and its floor,
/// from the bottom up.
const FLOORS: &[(&str, u8)] = &[
    // Plain helpers and data: they name no other module.
    ("http", 0),
    ("clock", 0),
    ("memory", 1),
    ("config", 0),
    ("logging", 0),
    ("demo_backend", 0),
    // Who calls, where things are kept.
    ("auth", 1),
    ("store", 1),
    ("healthcheck", 1),
    ("edge", 1),
    // Sessions (their ends are shared through the store); what backends receive; the
    // record of a request.
    ("sessions", 2),
    ("credentials", 2),
    ("record", 2),
    ("vault", 2),
    // Behind the gateway; the audit trail.
    ("upstream", 3),
    ("audit", 3),
    // Features built on them.
    ("builtins", 4),
    ("dev_as", 4),
    // The composition root, and the checks of a configuration about to run.
    ("state", 5),
    ("preflight", 5),
    // The edge.
    ("well_known", 6),
    ("mcp", 7),
    ("gateway", 8),
    ("server", 9),
    ("demo", 10),
    // Production running: in-flight count, TLS certificates, signals, reload.
    ("drain", 0),
    ("tls", 0),
    ("shutdown", 1),
    ("reload", 8),
    ("discovery", 6),
    ("check_backend", 5),
    // Test-only.
    ("house_rules", 11),
    // Observe and protect: rate-limit buckets, pinning on the catalog, metrics, admin API.
    ("limits", 1),
    ("integrity", 2),
    ("metrics", 4),
    ("admin", 6),
    // Fleets: the bus over Redis and the start-up key check.
    ("fleet", 4),
];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module names a source line refers to through `crate::`.
fn crate_refs(line: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a, b::c};` (on one line; rustfmt splits long ones per item)
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.push(name);
            }
        }
        rest = after;
    }
    refs
}

/// Every forbidden reference in `src/`, as `file:line: module (floor a) names module (floor b)`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        // Unit tests follow the floors too: a test module that names a module above its own
        // closes an import circle as surely as the code does (tests of a whole pipeline live
        // in the module that runs it, e.g. `preflight/tests.rs`).
        let Some(own) = floor(&module) else {
            found.push(format!(
                "{}: module `{module}` has no floor in src/house_rules.rs FLOORS",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for target in crate_refs(line) {
                if target == module {
                    continue;
                }
                // Items of the crate root (`GATEWAY_VERSION`) are not modules.
                let Some(theirs) = floor(&target) else {
                    continue;
                };
                if theirs >= own {
                    found.push(format!(
                        "{}:{}: `{module}` (floor {own}) names `{target}` (floor {theirs}): a module may only name modules on a lower floor",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn modules_only_name_modules_on_lower_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "house rules broken (docs/architecture.md, House rules):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_of_src_has_a_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" || !(e.path().is_dir() || name.ends_with(".rs")) {
            continue;
        }
        modules.insert(module.clone(), floor(&module));
    }
    let missing: Vec<&String> = modules
        .iter()
        .filter(|(_, f)| f.is_none())
        .map(|(m, _)| m)
        .collect();
    assert!(missing.is_empty(), "modules without a floor: {missing:?}");
}

#[test]
fn the_check_catches_an_upward_import() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("store")).expect("store dir");
    std::fs::write(
        src.join("store/mod.rs"),
        "use crate::config::Config;\nuse crate::{audit, http};\n",
    )
    .expect("write");
    std::fs::write(src.join("http.rs"), "//! nothing\n").expect("write");
    let found = violations(src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("store/mod.rs:2") && found[0].contains("`audit`"),
        "{found:?}"
    );
}
