//! The JSON Schema (draft 2020-12) of the YAML configuration, printed by
//! `cortex-gateway config-schema` and published as `docs/config-schema.json`, so that editors
//! (yaml-language-server and the like) validate and complete the file.
//!
//! It is generated from the very types the loader deserializes into ([`Config`] and its
//! parts): key names, types, enum values, defaults and the doc comments as descriptions. Then
//! it is adjusted for what the loader accepts beyond those types:
//! - `${VAR}` / `${VAR:-default}` references where a number, boolean or enum value is expected
//!   (text values may contain them anyway);
//! - an empty value (`key:`) for sections, lists and maps, which then keep their defaults;
//! - required keys that an environment variable may supply instead of the file
//!   ([`ENV_SUPPLIED`]).
//!
//! It is stricter than the loader in one way only: a text value written as a bare number or
//! boolean (`name: 8080`) loads as that text, but the schema wants it quoted.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::schema::Config;

/// Where the `${VAR}` reference schema lives in the document.
pub(crate) const REFERENCE_REF: &str = "#/$defs/EnvReference";

/// Required keys that the environment can supply, so the file may leave them out:
/// (definition, key, the variable).
const ENV_SUPPLIED: &[(&str, &str, &str)] = &[
    ("BackendConfig", "url", "CORTEX_BACKEND_<ID>_URL"),
    ("DevBypassConfig", "token", "CORTEX_DEV_BYPASS_TOKEN"),
];

/// The schema as a JSON value.
pub fn json_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut root = generator.into_root_schema_for::<Config>().to_value();
    if let Some(object) = root.as_object_mut() {
        object.insert("title".into(), json!("Cortex Gateway configuration"));
        object.insert(
            "description".into(),
            json!("The YAML configuration of cortex-gateway (conf/gateway.yaml is the annotated reference; docs/configuration.md explains every key). Environment variables override the file after `${VAR}` references are expanded; `cortex-gateway check-config` checks a file completely."),
        );
    }
    for (definition, key, _) in ENV_SUPPLIED {
        if let Some(Value::Object(def)) = root.pointer_mut(&format!("/$defs/{definition}")) {
            if let Some(Value::Array(required)) = def.get_mut("required") {
                required.retain(|k| k != key);
                if required.is_empty() {
                    def.remove("required");
                }
            }
        }
    }
    adjust(&mut root);
    if let Some(defs) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        defs.insert(
            "EnvReference".into(),
            json!({
                "description": "An environment reference, `${VAR}` or `${VAR:-default}`, replaced by the variable's value when the file is loaded.",
                "type": "string",
                "pattern": r"\$\{[^}]+\}"
            }),
        );
    }
    root
}

/// The schema as published: pretty JSON with a final newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// Applies the loader's allowances to every subschema.
fn adjust(node: &mut Value) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    for key in ["properties", "$defs"] {
        if let Some(Value::Object(children)) = object.get_mut(key) {
            for child in children.values_mut() {
                adjust(child);
            }
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(children)) = object.get_mut(key) {
            // A choice that already offers a reference (units) is complete as written.
            let reference = json!({ "$ref": REFERENCE_REF });
            if !children.contains(&reference) {
                for child in children.iter_mut() {
                    adjust(child);
                }
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = object.get_mut(key) {
            adjust(child);
        }
    }
    unwrap_description(object);
    drop_nested_section_default(object);
    allow_empty(object);
    allow_reference(object);
}

/// Doc comments are wrapped at 100 columns; an editor's hover wraps by itself. Paragraphs
/// (blank lines) stay.
fn unwrap_description(object: &mut Map<String, Value>) {
    if let Some(Value::String(text)) = object.get_mut("description") {
        *text = text
            .split("\n\n")
            .map(|paragraph| {
                paragraph
                    .split('\n')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}

/// A section's default is the defaults of its keys, each documented on the key: repeating
/// the whole object on the section only adds noise.
fn drop_nested_section_default(object: &mut Map<String, Value>) {
    if object.contains_key("$ref") && object.get("default").is_some_and(Value::is_object) {
        object.remove("default");
    }
}

/// `key:` with nothing gives a section (without required keys), a list or a map its default.
fn allow_empty(object: &mut Map<String, Value>) {
    let Some(Value::String(kind)) = object.get("type") else {
        return;
    };
    let empty_ok = match kind.as_str() {
        "array" => true,
        "object" => !object.contains_key("required"),
        _ => false,
    };
    if empty_ok {
        let kind = kind.clone();
        object.insert("type".into(), json!([kind, "null"]));
    }
}

/// Numbers, booleans and enum values may be written as `${VAR}` references.
fn allow_reference(object: &mut Map<String, Value>) {
    let reference = json!({ "$ref": REFERENCE_REF });
    // An enum: one `const` per value (each with its description).
    if let Some(Value::Array(choices)) = object.get_mut("oneOf") {
        if !choices.is_empty() && choices.iter().all(|c| c.get("const").is_some()) {
            choices.push(reference);
        }
        return;
    }
    let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
    let types: Vec<Value> = match object.get("type") {
        Some(Value::Array(types)) => types.clone(),
        Some(single) => vec![single.clone()],
        None => return,
    };
    let has_enum = object.contains_key("enum");
    if !has_enum && !types.iter().any(scalar) {
        return;
    }
    // Move the value's own constraints into the first branch; the description and the
    // default stay on the key.
    let mut value_schema = Map::new();
    for key in ["type", "enum", "minimum", "maximum"] {
        if let Some(v) = object.remove(key) {
            value_schema.insert(key.into(), v);
        }
    }
    // `uint`, `uint32`…: not formats JSON Schema defines; the minimum says it.
    object.remove("format");
    object.insert(
        "anyOf".into(),
        json!([Value::Object(value_schema), reference]),
    );
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::config::tree::parse_yaml;

    fn validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&json_schema())
            .expect("the schema is a valid draft 2020-12 schema")
    }

    fn problems(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
        let tree = parse_yaml(yaml, "t").expect("YAML");
        validator
            .iter_errors(&tree.to_json())
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn the_published_schema_is_the_generated_one() {
        let published = include_str!("../../docs/config-schema.json");
        assert!(
            published == json_schema_text(),
            "docs/config-schema.json is out of date: run `cargo run -- config-schema > docs/config-schema.json`"
        );
    }

    #[test]
    fn shipped_files_validate_against_the_schema() {
        let validator = validator();
        for (name, yaml) in [
            ("conf/gateway.yaml", include_str!("../../conf/gateway.yaml")),
            (
                "conf/examples/local-dev.yaml",
                include_str!("../../conf/examples/local-dev.yaml"),
            ),
            (
                "conf/examples/production.yaml",
                include_str!("../../conf/examples/production.yaml"),
            ),
            (
                "conf/examples/cortex-env.yaml",
                include_str!("../../conf/examples/cortex-env.yaml"),
            ),
        ] {
            let found = problems(&validator, yaml);
            assert!(found.is_empty(), "{name}: {found:#?}");
        }
    }

    #[test]
    fn the_schema_refuses_what_the_loader_refuses() {
        let validator = validator();
        for (yaml, needle) in [
            ("catalog:\n  refrsh: 10s\n", "refrsh"),
            ("auth:\n  mode: oath\n", "/auth/mode"),
            ("server:\n  threads: many\n", "/server/threads"),
            ("catalog:\n  refresh: 10 mins\n", "/catalog/refresh"),
            (
                "server:\n  max_body_bytes: 4 megs\n",
                "/server/max_body_bytes",
            ),
            ("backends:\n  - url: http://127.0.0.1:1\n", "id"),
            (
                "sessions:\n  replay_buffer: -1\n",
                "/sessions/replay_buffer",
            ),
        ] {
            let found = problems(&validator, yaml);
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{yaml:?} should be refused at {needle}: {found:?}"
            );
        }
    }

    #[test]
    fn the_schema_accepts_what_the_loader_accepts() {
        let validator = validator();
        for yaml in [
            "",
            "server:\ncatalog:\nbackends:\n",
            "server:\n  threads: ${THREADS:-4}\n  max_body_bytes: 64KiB\n  grace_period: 1h30m\n",
            "catalog:\n  refresh: 90\n  tool_mode: ${TOOL_MODE}\n",
            "allow_insecure_backends: ${INSECURE:-false}\n",
            "backends:\n  - id: demo\n",
            "auth:\n  dev_bypass:\n    scopes: [a]\n",
            "server:\n  max_body_bytes: 4096\n",
        ] {
            let found = problems(&validator, yaml);
            assert!(found.is_empty(), "{yaml:?}: {found:?}");
            // …and the loader accepts the same shapes (references set, URLs given).
            let env = crate::config::MapEnv::from_pairs([
                ("THREADS", "4"),
                ("TOOL_MODE", "search"),
                ("CORTEX_BACKEND_DEMO_URL", "http://127.0.0.1:1"),
                ("CORTEX_DEV_BYPASS_TOKEN", "dev-secret"),
                ("OAUTH_ISSUER", "https://auth.example.com"),
            ]);
            let loaded = crate::config::load_str(yaml, "t", &env);
            assert!(loaded.is_ok(), "{yaml:?}: {}", loaded.unwrap_err());
        }
    }

    #[test]
    fn unit_patterns_agree_with_the_parsers() {
        use crate::config::units::{parse_duration, parse_size, DURATION_PATTERN, SIZE_PATTERN};
        let duration =
            jsonschema::draft202012::new(&json!({"type": "string", "pattern": DURATION_PATTERN}))
                .unwrap();
        for text in [
            "500ms", "60s", "10m", "1h", "2d", "1h30m", "1h 30m", "90", " 5s ", "10 mins", "1.5s",
            "-1s", "", "s", "5sm", "1w", "5 ms",
        ] {
            assert_eq!(
                duration.is_valid(&json!(text)),
                parse_duration(text).is_ok(),
                "duration {text:?}"
            );
        }
        let size =
            jsonschema::draft202012::new(&json!({"type": "string", "pattern": SIZE_PATTERN}))
                .unwrap();
        for text in [
            "4MiB", "64kib", "1GB", "512B", "100", "1 KiB", "1.5MiB", "4 megs", "-1", "", "KiB",
            "1TiB",
        ] {
            assert_eq!(
                size.is_valid(&json!(text)),
                parse_size(text).is_ok(),
                "size {text:?}"
            );
        }
    }

    /// The key sets of every object of the schema, by path (`backends[]` for list items).
    fn schema_objects(schema: &Value) -> BTreeMap<String, BTreeSet<String>> {
        fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
            match node.get("$ref").and_then(Value::as_str) {
                Some(r) => root
                    .pointer(r.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling {r}")),
                None => node,
            }
        }
        fn walk(
            root: &Value,
            node: &Value,
            path: &str,
            out: &mut BTreeMap<String, BTreeSet<String>>,
        ) {
            let node = resolve(root, node);
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                out.insert(path.to_string(), props.keys().cloned().collect());
                for (key, child) in props {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(root, child, &child_path, out);
                }
            }
            if let Some(items) = node.get("items") {
                walk(root, items, &format!("{path}[]"), out);
            }
            for key in ["anyOf", "oneOf"] {
                for branch in node
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    walk(root, branch, path, out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(schema, schema, "", &mut out);
        out
    }

    /// A file that reaches every section of the configuration, so that the loader meets the
    /// field list of every struct (values do not matter: invalid ones are still visited).
    const EVERY_SECTION: &str = "\
server: {tls: {listen: [], cert_file: c, key_file: k}, limits: {}}
sessions: {}
catalog: {}
auth:
  principal: {}
  dev_bypass: {token: t}
  oauth: {introspection: {}, token_exchange: {}}
  mint: {}
scopes: {}
backends: [{id: a, url: 'http://127.0.0.1:1', static_catalog: {}}]
logging: {}
builtins: {scopes: {}}
tickets: {}
dev_authorization_server: {users: [{name: a}], clients: [{id: c}]}
storage: {}
audit: {}
outbound: {}
vault: {keys: [{id: a, key: k}], providers: [{id: p, resource: 'http://127.0.0.1:1/mcp'}]}
metrics: {}
rate_limits: {redis: {}}
integrity: {}
admin: {}
fleet: {}
";

    #[test]
    fn the_schema_and_the_loader_know_the_same_keys() {
        let schema = schema_objects(&json_schema());
        let mut loader: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, fields) in crate::config::schema_fields(EVERY_SECTION) {
            let mut normal = String::new();
            let mut in_index = false;
            for c in path.chars() {
                match c {
                    '[' => {
                        in_index = true;
                        normal.push('[');
                    }
                    ']' => {
                        in_index = false;
                        normal.push(']');
                    }
                    _ if in_index => {}
                    _ => normal.push(c),
                }
            }
            loader.insert(normal, fields.iter().map(|f| f.to_string()).collect());
        }
        assert_eq!(
            schema.keys().collect::<Vec<_>>(),
            loader.keys().collect::<Vec<_>>(),
            "sections: the schema (left) and the loader (right) differ; a new section must also be added to EVERY_SECTION"
        );
        for (path, keys) in &schema {
            assert_eq!(keys, &loader[path], "keys of `{path}`");
        }
    }

    #[test]
    fn every_key_is_described_and_typed() {
        let schema = json_schema();
        fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (key, child) in props {
                    let at = format!("{path}.{key}");
                    if child.get("description").is_none() {
                        missing.push(format!("{at}: no description"));
                    }
                    let typed = ["type", "$ref", "anyOf", "oneOf"]
                        .iter()
                        .any(|k| child.get(k).is_some());
                    if !typed {
                        missing.push(format!("{at}: no type"));
                    }
                    walk(child, &at, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&schema, "", &mut missing);
        for (name, def) in schema["$defs"].as_object().unwrap() {
            walk(def, name, &mut missing);
        }
        assert!(missing.is_empty(), "{missing:#?}");
        // Spot checks: enum values, defaults, units.
        let mode = &schema["$defs"]["AuthMode"]["oneOf"];
        let values: Vec<&str> = mode
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["const"].as_str())
            .collect();
        assert_eq!(values, vec!["none", "oauth"]);
        let refresh = &schema["$defs"]["CatalogConfig"]["properties"]["refresh"];
        assert_eq!(refresh["default"], "1m");
        let threads = &schema["$defs"]["ServerConfig"]["properties"]["threads"];
        assert_eq!(threads["default"], 2);
        for (definition, key, var) in ENV_SUPPLIED {
            let def = &schema["$defs"][definition];
            assert!(def["properties"].get(key).is_some(), "{definition}.{key}");
            let required = def["required"].as_array().cloned().unwrap_or_default();
            assert!(
                !required.contains(&json!(key)),
                "{definition}.{key} ({var})"
            );
        }
    }
}
