//! The subset of a Spin application manifest (`spin.toml`, version 2) the harness honours:
//! the HTTP component's source, its key-value stores and SQLite databases, and the variables
//! (application variables with defaults, `required`, and the component's `{{ name }}`
//! templates), resolved the way `spin up` resolves them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Debug, Deserialize)]
struct RawHttpTrigger {
    route: String,
    component: String,
}

#[derive(Debug, Deserialize)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    source: String,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

/// The HTTP component to serve, with what it may use.
#[derive(Debug, Clone)]
pub struct App {
    /// Name of the component in the manifest.
    pub component: String,
    /// The component's Wasm file.
    pub source: PathBuf,
    /// Key-value store labels the component may open.
    pub key_value_stores: Vec<String>,
    /// SQLite database names the component may open.
    pub sqlite_databases: Vec<String>,
    /// The component's variables, resolved.
    pub variables: HashMap<String, String>,
}

/// Replaces `{{ name }}` in a component variable's template with application variables.
fn expand(template: &str, app_vars: &HashMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("unclosed template in {template:?}"))?;
        let name = after[..end].trim();
        let value = app_vars
            .get(name)
            .ok_or_else(|| anyhow!("template {template:?} names undefined variable {name:?}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl App {
    /// Reads the manifest and resolves the variables of the component behind the `/...`
    /// HTTP route. `provided` are application variable values (lower-case names), as Spin's
    /// environment (`SPIN_VARIABLE_*`) and dotenv providers supply them.
    pub fn load(manifest: &Path, provided: &HashMap<String, String>) -> Result<App> {
        let text = std::fs::read_to_string(manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let raw: RawManifest =
            toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        if raw.spin_manifest_version != 2 {
            bail!("only spin_manifest_version = 2 is supported");
        }
        let trigger = raw
            .trigger
            .http
            .iter()
            .find(|t| t.route == "/...")
            .ok_or_else(|| anyhow!("no [[trigger.http]] with route \"/...\""))?;
        let component = raw
            .component
            .get(&trigger.component)
            .ok_or_else(|| anyhow!("component {:?} is not defined", trigger.component))?;
        let mut app_vars = HashMap::new();
        for (name, var) in &raw.variables {
            match provided.get(name).or(var.default.as_ref()) {
                Some(value) => {
                    app_vars.insert(name.clone(), value.clone());
                }
                None if var.required => bail!("required variable {name:?} has no value"),
                None => {}
            }
        }
        for name in provided.keys() {
            if !raw.variables.contains_key(name) {
                bail!("variable {name:?} is not declared in the manifest");
            }
        }
        let variables = component
            .variables
            .iter()
            .map(|(name, template)| Ok((name.clone(), expand(template, &app_vars)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let base = manifest.parent().unwrap_or(Path::new("."));
        Ok(App {
            component: trigger.component.clone(),
            source: base.join(&component.source),
            key_value_stores: component.key_value_stores.clone(),
            sqlite_databases: component.sqlite_databases.clone(),
            variables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_from_application_variables() {
        let vars = HashMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(expand("x{{ a }}y{{a}}", &vars).unwrap(), "x1y1");
        assert!(expand("{{ b }}", &vars).is_err());
        assert!(expand("{{ a", &vars).is_err());
    }
}
