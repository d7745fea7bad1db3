//! Response bodies whose types live below the server (the engine's run
//! report, its proofs, the store's checkpoints), described in the OpenAPI
//! document from their own JSON Schema. Those crates derive
//! `schemars::JsonSchema` and know nothing of utoipa: an operation names
//! such a body as [`Described<T>`], a reference by the type's name, and
//! [`add`] puts `T`'s schema, with every type it names, among the
//! document's components, so a client sees the shape the handler sends.
//! (The schemas are joined as JSON: utoipa's own schema type cannot read
//! every schema JSON Schema allows, such as "any value".)

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::JsonSchema;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A body of type `T`, as the operations' annotations name it.
pub(crate) struct Described<T>(PhantomData<T>);

impl<T: JsonSchema> PartialSchema for Described<T> {
    fn schema() -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(T::schema_name()))
    }
}

impl<T: JsonSchema> ToSchema for Described<T> {
    fn name() -> Cow<'static, str> {
        T::schema_name()
    }
}

/// A workflow spec as JSON, described by the spec's own schema.
pub(crate) type WorkflowSpec = Described<baton_core::Workflow>;

/// An agent of the registry.
pub(crate) type AgentBody = Described<baton_engine::AgentStatus>;

/// The worker protocol's messages.
pub(crate) type RegistrationBody = Described<baton_engine::remote::protocol::Registration>;
pub(crate) type RegisteredBody = Described<baton_engine::remote::protocol::Registered>;
pub(crate) type PollBody = Described<baton_engine::remote::protocol::Poll>;
pub(crate) type PolledBody = Described<baton_engine::remote::protocol::Polled>;
pub(crate) type ReportBody = Described<baton_engine::remote::protocol::Report>;

/// Adds `T`'s schema and those of the types it names to `components`
/// (the document's `components.schemas`), each by its name, references
/// pointing among them. Serialized forms are described: these are
/// responses.
pub(crate) fn add<T: JsonSchema>(components: &mut Map<String, Value>) {
    add_as::<T>(components, Contract::Serialize);
}

/// As [`add`], for a request body: the form that is read (fields with
/// defaults may be left out).
pub(crate) fn add_request<T: JsonSchema>(components: &mut Map<String, Value>) {
    add_as::<T>(components, Contract::Deserialize);
}

fn add_as<T: JsonSchema>(components: &mut Map<String, Value>, contract: Contract) {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.contract = contract;
        })
        .into_generator();
    let mut root = generator.root_schema_for::<T>().to_value();
    if let Some(object) = root.as_object_mut() {
        object.remove("$schema");
        object.remove("components");
    }
    let name = T::schema_name().into_owned();
    let mut found = generator.take_definitions(true);
    found.insert(name.clone(), root);
    // A type that holds itself (a workflow's inline sub-workflow) refers
    // to its root as `#`, which in the document is the document.
    let home = format!("#/components/schemas/{name}");
    for schema in found.values_mut() {
        rehome(schema, &home);
    }
    components.extend(found);
}

/// Points references to `#` at `home`.
fn rehome(schema: &mut Value, home: &str) {
    match schema {
        Value::Object(map) => {
            if map.get("$ref").and_then(Value::as_str) == Some("#") {
                map.insert("$ref".to_owned(), Value::from(home));
            }
            map.values_mut().for_each(|value| rehome(value, home));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| rehome(value, home)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_report_and_every_type_it_names_become_components() {
        let mut components = Map::new();
        add::<baton_engine::RunReport>(&mut components);
        for wanted in [
            "RunReport",
            "TaskReport",
            "RunStatus",
            "TaskStatus",
            "Digest",
        ] {
            assert!(components.contains_key(wanted), "{wanted}: {components:?}");
        }
        assert_eq!(
            components["RunReport"]["properties"]["tasks"]["items"]["$ref"],
            "#/components/schemas/TaskReport"
        );
    }
}
