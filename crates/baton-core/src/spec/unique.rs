//! A spec that says a key twice in one mapping is refused wherever the key
//! is: YAML forbids it, and serde's maps and `Value` would silently keep the
//! last. Struct fields already refuse repeats; these cover the free-form
//! maps and values, so a spec read straight into its types is held to the
//! same rule as one diagnosed field by field.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::spec::Template;

/// Any value, but a mapping with a key twice is an error.
pub(crate) struct UniqueValue(pub(crate) Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UniqueValue, D::Error> {
        deserializer
            .deserialize_any(UniqueValueVisitor)
            .map(UniqueValue)
    }
}

/// `deserialize_with` for a [`Value`].
pub(crate) fn value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    UniqueValue::deserialize(deserializer).map(|UniqueValue(value)| value)
}

/// `deserialize_with` for an optional [`Value`] (with `default`).
pub(crate) fn some_value<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    value(deserializer).map(Some)
}

/// `deserialize_with` for a list of [`Value`]s.
pub(crate) fn values<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Value>, D::Error> {
    Vec::<UniqueValue>::deserialize(deserializer)
        .map(|values| values.into_iter().map(|UniqueValue(value)| value).collect())
}

/// A map whose keys are checked as they are inserted.
pub(crate) trait Keyed: Default {
    type Item;
    /// Inserts a new key; false (and nothing inserted) for one already in.
    fn put(&mut self, key: String, item: Self::Item) -> bool;
}

impl<V> Keyed for BTreeMap<String, V> {
    type Item = V;

    fn put(&mut self, key: String, item: V) -> bool {
        match self.entry(key) {
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(item);
                true
            }
            std::collections::btree_map::Entry::Occupied(_) => false,
        }
    }
}

impl<V> Keyed for IndexMap<String, V> {
    type Item = V;

    fn put(&mut self, key: String, item: V) -> bool {
        match self.entry(key) {
            indexmap::map::Entry::Vacant(entry) => {
                entry.insert(item);
                true
            }
            indexmap::map::Entry::Occupied(_) => false,
        }
    }
}

/// What a checked map holds: values read the strict way, others as usual.
pub(crate) trait Item<'de>: Sized {
    fn next<A: MapAccess<'de>>(access: &mut A) -> Result<Self, A::Error>;
}

impl<'de> Item<'de> for Value {
    fn next<A: MapAccess<'de>>(access: &mut A) -> Result<Value, A::Error> {
        access
            .next_value::<UniqueValue>()
            .map(|UniqueValue(value)| value)
    }
}

/// Items read as themselves: types whose own `Deserialize` already refuses
/// a key given twice (or that hold no map). The module that defines such
/// a type says so beside it.
macro_rules! plain_items {
    ($($item:ty),*) => {
        $(impl<'de> $crate::spec::unique::Item<'de> for $item {
            fn next<A: ::serde::de::MapAccess<'de>>(access: &mut A) -> Result<$item, A::Error> {
                access.next_value()
            }
        })*
    };
}
pub(crate) use plain_items;

plain_items!(String, u32, Template);

/// `deserialize_with` for a map: a key twice is an error.
pub(crate) fn map<'de, D, M>(deserializer: D) -> Result<M, D::Error>
where
    D: Deserializer<'de>,
    M: Keyed,
    M::Item: Item<'de>,
{
    struct MapVisitor<M>(PhantomData<M>);

    impl<'de, M> Visitor<'de> for MapVisitor<M>
    where
        M: Keyed,
        M::Item: Item<'de>,
    {
        type Value = M;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<M, A::Error> {
            let mut map = M::default();
            while let Some(key) = access.next_key::<String>()? {
                let item = M::Item::next(&mut access)?;
                if !map.put(key.clone(), item) {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
            }
            Ok(map)
        }
    }

    deserializer.deserialize_map(MapVisitor(PhantomData))
}

/// `deserialize_with` for an optional map (with `default`).
pub(crate) fn some_map<'de, D, M>(deserializer: D) -> Result<Option<M>, D::Error>
where
    D: Deserializer<'de>,
    M: Keyed,
    M::Item: Item<'de>,
{
    map(deserializer).map(Some)
}

struct UniqueValueVisitor;

impl<'de> Visitor<'de> for UniqueValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        value(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(UniqueValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueValue(value) = map.next_value()?;
            if fields.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_said_twice_anywhere_is_refused() {
        let nested = r#"{"a": {"b": 1, "b": 2}}"#;
        assert!(serde_json::from_str::<UniqueValue>(nested).is_err());
        assert!(serde_json::from_str::<UniqueValue>(r#"{"a": [{"b": 1}], "c": 2}"#).is_ok());
        let mut deserializer = serde_json::Deserializer::from_str(r#"{"x": "1", "x": "2"}"#);
        assert!(map::<_, BTreeMap<String, Template>>(&mut deserializer).is_err());
    }
}
