//! Configuration problems: each one says where (file, line, column), which key, and what to do.

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where in the file, as `gateway.yaml:12:5`, when the problem comes from the file.
    pub location: Option<String>,
    /// The key path, as `catalog.refresh` or `backends[0].url`.
    pub path: Option<String>,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl ConfigIssue {
    /// An issue with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigIssue {
            location: None,
            path: None,
            message: message.into(),
        }
    }

    /// Sets the key path.
    pub fn at_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = (!path.is_empty()).then_some(path);
        self
    }

    /// Sets the file location.
    pub fn at_location(mut self, location: Option<String>) -> Self {
        self.location = location;
        self
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load, in file order where known. Displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

fn lines(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// A single-issue error.
    pub fn one(issue: ConfigIssue) -> Self {
        ConfigErrors(vec![issue])
    }
}

/// Errors of the helpers around loading (reading an env file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of an env file is not `KEY=VALUE`.
    #[error("{}:{line}: {message}", path.display())]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_issue_per_line_with_location_and_path() {
        let errors = ConfigErrors(vec![
            ConfigIssue::new("bad")
                .at_path("catalog.refresh")
                .at_location(Some("gateway.yaml:3:12".into())),
            ConfigIssue::new("worse"),
        ]);
        assert_eq!(
            errors.to_string(),
            "gateway.yaml:3:12: catalog.refresh: bad\nworse"
        );
    }
}
