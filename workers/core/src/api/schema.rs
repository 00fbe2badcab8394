//! The JSON Schemas of the API's request and response bodies (feature `schema`, native
//! builds only), generated from the types the route table names ([`table::register_schemas`]):
//! the types the handlers parse and serialise, their doc comments the descriptions. They are
//! checked in as `schema/openapi.components.json`, which `schema/openapi.py` writes into
//! `schema/openapi.yaml` as its component schemas.
//!
//! The test of this module fails when the checked-in file differs from what the types
//! generate; `UPDATE_SCHEMAS=1 cargo test -p edgevideo-core` rewrites it.

use schemars::generate::SchemaSettings;
use schemars::transform::{RecursiveTransform, Transform as _};
use schemars::Schema;
use serde_json::{Map, Value};

use crate::api::table;

/// The file in `schema/` that holds the components.
pub const COMPONENTS_FILE: &str = "openapi.components.json";

/// Every schema the route table names, and those they refer to, by name: an OpenAPI
/// `components.schemas` object (references are `#/components/schemas/{name}`).
pub fn components() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    table::register_schemas(&mut generator);
    let mut definitions = generator.take_definitions(true);
    for schema in definitions.values_mut() {
        if let Ok(mut typed) = Schema::try_from(std::mem::take(schema)) {
            RecursiveTransform(one_line_descriptions).transform(&mut typed);
            *schema = typed.to_value();
        }
    }
    definitions
}

/// Doc comments are wrapped at 100 columns; a description is one line per paragraph.
fn one_line_descriptions(schema: &mut Schema) {
    if let Some(Value::String(text)) = schema
        .as_object_mut()
        .and_then(|object| object.get_mut("description"))
    {
        *text = text
            .split("\n\n")
            .map(|paragraph| paragraph.split('\n').collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::api::table::ROUTES;

    fn components_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../schema")
            .join(COMPONENTS_FILE)
    }

    /// The checked-in components are what the types generate. Run with `UPDATE_SCHEMAS=1` to
    /// rewrite them (then regenerate `schema/openapi.yaml`, see `schema/openapi.py`).
    #[test]
    fn checked_in_components_match_the_types() {
        let generated = Value::Object(components());
        let path = components_path();
        if std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
            let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            return;
        }
        let checked_in: Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        assert!(
            checked_in == generated,
            "schema/{COMPONENTS_FILE} differs from the types the route table names; regenerate \
             it with `UPDATE_SCHEMAS=1 cargo test -p edgevideo-core`, then schema/openapi.yaml \
             with schema/openapi.py, and review the diff"
        );
    }

    /// Every name in the route table is a component of that name (the table spells the
    /// schema's own name, so the served table and the components agree).
    #[test]
    fn every_named_type_is_a_component_of_its_name() {
        let mut generator = SchemaSettings::draft2020_12().into_generator();
        for (spelled, named) in table::register_schemas(&mut generator) {
            assert_eq!(
                spelled, named,
                "the table's name of a type is its schema's name"
            );
        }
        let components = components();
        for route in ROUTES {
            let names = route
                .body
                .iter()
                .chain(route.replies.iter().filter_map(|r| r.schema.as_ref()));
            for name in names {
                assert!(
                    components.contains_key(*name),
                    "{:?}: no component {name}",
                    route.name
                );
            }
        }
        for name in ["SessionIssued", "VideoDetail", "TranscodeCallback", "Error"] {
            assert_eq!(components.contains_key(name), name != "Error", "{name}");
        }
    }

    /// The request bodies that refuse unknown fields say so, and the listing card carries
    /// the flattened summary's fields.
    #[test]
    fn schemas_keep_the_contract() {
        let components = components();
        assert_eq!(
            components["NewPlugin"]["additionalProperties"],
            Value::Bool(false)
        );
        let card = &components["VideoCard"];
        for field in ["id", "tags", "status", "has_poster", "views", "poster_url"] {
            assert!(card["properties"].get(field).is_some(), "{field}");
        }
        assert_eq!(
            card["properties"]["status"]["$ref"],
            "#/components/schemas/VideoStatus"
        );
        assert!(!components["Health"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains('\n'));
    }
}
