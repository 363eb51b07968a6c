//! The whole configuration pipeline from a YAML string, as `serve`, `check-config` and a
//! reload run it: parse, `${VAR}` expansion, environment overlay, typed deserialization,
//! validation and the features' start-up checks (`preflight::load_str`); then the report
//! `check-config` prints and the reload diff against the defaults.
//!
//! Input: the YAML text (lossily decoded). Checked: no panic or hang; every problem is
//! reported as text.
#![no_main]

use cortex_gateway::config::{self, MapEnv};
use cortex_gateway::preflight;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// A few variables for `${VAR}` expansion and the overlay.
static ENV: LazyLock<MapEnv> = LazyLock::new(|| {
    MapEnv::from_pairs([
        ("HOME", "/nonexistent"),
        ("TOKEN", "s3cret"),
        ("PORT", "8080"),
    ])
});

static DEFAULTS: LazyLock<Option<config::Config>> = LazyLock::new(|| {
    preflight::load_str("", "defaults.yaml", &*ENV)
        .ok()
        .map(|l| l.config)
});

fuzz_target!(|data: &[u8]| {
    let yaml = String::from_utf8_lossy(data);
    match preflight::load_str(&yaml, "fuzz.yaml", &*ENV) {
        Ok(loaded) => {
            let _ = config::render_check_report(&loaded);
            if let Some(defaults) = DEFAULTS.as_ref() {
                let changes = config::diff(defaults, &loaded.config);
                let _ = config::render_diff(&changes);
                let _ = config::keep_restart_keys(defaults, &loaded.config);
            }
        }
        Err(errors) => {
            let text = errors.to_string();
            assert!(!text.is_empty());
        }
    }
});
