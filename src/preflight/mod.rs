//! Everything `serve` checks before it runs a configuration, as one load: the file itself
//! (`crate::config`), then the settings the features turn into running parts at start
//! ([`startup`]: token algorithms, identity propagation to backends, the development
//! authorization server, audit and storage; [`files`]: the key files they read).
//!
//! The configuration module imports no feature, so the features' rules plug in here, above
//! them, and are reported with the same file positions and fixes. `serve`, `check-config`,
//! a configuration reload and `audit verify` all load through [`load`], so each refuses
//! exactly what the others refuse.

mod files;
mod protect;
mod startup;

use std::path::Path;

use crate::config::checks::{Findings, Seg};
use crate::config::{self, Config, ConfigErrors, EnvSource, LoadedConfig};

/// The feature checks, as `config::load_with` runs them.
fn checks(config: &Config, set_in_file: &dyn Fn(&[Seg]) -> bool, f: &mut Findings) {
    startup::check(config, f);
    files::check(config, set_in_file, f);
    protect::check(config, f);
}

/// Loads and checks the configuration at `path` (or the defaults) with `env`, as `serve`
/// needs it.
pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<LoadedConfig, ConfigErrors> {
    config::load_with(path, env, &checks)
}

/// Same as [`load`], from a YAML string; `name` stands for the file in messages.
pub fn load_str(yaml: &str, name: &str, env: &dyn EnvSource) -> Result<LoadedConfig, ConfigErrors> {
    config::load_str_with(yaml, name, env, &checks)
}

#[cfg(test)]
mod tests;
