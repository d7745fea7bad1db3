//! SHA-256 digests of run data, over a canonical encoding so the same value
//! hashes the same in every process and version: JSON with object keys
//! sorted, whatever order a map kept them in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of a JSON value in canonical form.
    pub fn of_json(value: &Value) -> Digest {
        let mut hasher = Hasher::default();
        hasher.json(value);
        hasher.finish()
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Text that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a SHA-256 digest (64 hex digits)")]
pub struct BadDigest(String);

/// Written as its 64 lowercase hex digits.
impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A SHA-256 digest as 64 lowercase hex digits.",
            "type": "string",
            "pattern": "^[0-9a-f]{64}$"
        })
    }
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(text: &str) -> Result<Digest, BadDigest> {
        let bad = || BadDigest(text.to_owned());
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Feeds fields into one digest. Each field is length- or tag-delimited, so
/// `("ab", "c")` and `("a", "bc")` differ.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn text(&mut self, text: &str) -> &mut Hasher {
        self.0.update((text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
        self
    }

    pub fn number(&mut self, number: u64) -> &mut Hasher {
        self.0.update(number.to_le_bytes());
        self
    }

    pub fn digest(&mut self, digest: &Digest) -> &mut Hasher {
        self.0.update(digest.0);
        self
    }

    /// A JSON value in canonical form: keys sorted, numbers as serde_json
    /// prints them, strings escaped as JSON.
    pub fn json(&mut self, value: &Value) -> &mut Hasher {
        match value {
            Value::Null => self.0.update(b"null"),
            Value::Bool(true) => self.0.update(b"true"),
            Value::Bool(false) => self.0.update(b"false"),
            Value::Number(number) => self.0.update(number.to_string().as_bytes()),
            Value::String(text) => self.json_string(text),
            Value::Array(items) => {
                self.0.update(b"[");
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.0.update(b",");
                    }
                    self.json(item);
                }
                self.0.update(b"]");
            }
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|left, right| left.0.cmp(right.0));
                self.0.update(b"{");
                for (index, (key, item)) in entries.into_iter().enumerate() {
                    if index > 0 {
                        self.0.update(b",");
                    }
                    self.json_string(key);
                    self.0.update(b":");
                    self.json(item);
                }
                self.0.update(b"}");
            }
        }
        self
    }

    /// Anything serializable, as the JSON serde_json writes for it, streamed
    /// into the digest. Structs keep their field order and serde_json's
    /// maps are sorted by key (its `preserve_order` feature is off), so
    /// the text is as canonical as [`Hasher::json`] without building a
    /// value first.
    pub fn serialized(&mut self, value: &impl Serialize) -> &mut Hasher {
        struct Sink<'a>(&'a mut Sha256);
        impl std::io::Write for Sink<'_> {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.update(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // Writing into a digest cannot fail, and run data always encodes.
        let _ = serde_json::to_writer(Sink(&mut self.0), value);
        self
    }

    fn json_string(&mut self, text: &str) {
        // A String's JSON form cannot fail to encode.
        let quoted = serde_json::to_string(text).unwrap_or_default();
        self.0.update(quoted.as_bytes());
    }

    pub fn finish(&mut self) -> Digest {
        Digest(std::mem::take(&mut self.0).finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_digests_ignore_key_order() {
        let one: Value = serde_json::from_str(r#"{"b": 1, "a": [true, null, "x"]}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"a": [true, null, "x"], "b": 1}"#).unwrap();
        assert_eq!(Digest::of_json(&one), Digest::of_json(&two));
        assert_ne!(Digest::of_json(&one), Digest::of_json(&Value::Null));
    }

    #[test]
    fn digests_print_and_parse_as_hex() {
        let digest = Digest::of_bytes(b"abc");
        assert_eq!(
            digest.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
        assert!("xyz".parse::<Digest>().is_err());
        assert!("é".repeat(32).parse::<Digest>().is_err());
    }

    #[test]
    fn fields_are_delimited() {
        let one = Hasher::default().text("ab").text("c").finish();
        let two = Hasher::default().text("a").text("bc").finish();
        assert_ne!(one, two);
    }
}
