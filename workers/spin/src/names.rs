//! Resource names, exactly as declared in `spin.toml`.
//!
//! Spin variable names are lower-case (`[a-z0-9_]`), so the core's configuration names
//! (`edgevideo_core::config::names`, upper-case as on Cloudflare) are looked up lower-cased:
//! `SESSION_SECRET` is the Spin variable `session_secret`.

/// Key-value store label (`key_value_stores` in `spin.toml`): the KV port and small blobs.
pub const KV_STORE: &str = "default";
/// SQLite database name (`sqlite_databases` in `spin.toml`): the catalogue and room state.
pub const SQLITE_DB: &str = "default";

/// The Spin variable that carries the core configuration value `name`.
pub fn variable(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names declared in the core's `config::names` module, read from its source so that
    /// a new configuration name cannot be forgotten in `spin.toml`.
    fn core_names() -> Vec<String> {
        let source = include_str!("../../core/src/config.rs");
        let module = source
            .split("pub mod names {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap_or_default();
        module
            .lines()
            .filter_map(|line| line.trim().strip_prefix("pub const "))
            .filter_map(|line| line.split('"').nth(1))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_core_config_name_is_a_spin_variable_of_the_component() {
        let names = core_names();
        assert!(names.len() >= 10, "names module not found: {names:?}");
        let manifest = include_str!("../../../spin.toml");
        for name in names {
            let variable = variable(&name);
            assert!(
                variable
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{variable} is not a valid Spin variable name"
            );
            let declared = format!("\n{variable} = {{ ");
            let mapped = format!("\n{variable} = \"{{{{ {variable} }}}}\"");
            assert!(
                manifest.contains(&declared),
                "spin.toml [variables] lacks {variable}"
            );
            assert!(
                manifest.contains(&mapped),
                "spin.toml component lacks {variable}"
            );
        }
    }
}
