//! The reference of both configuration files, taken from the definitions the
//! code reads them with, so that the manual cannot drift from the program.
//!
//! A key's text is its field's own `///` comment (`DocumentedFields` on
//! [`ClientConfig`], [`ServerConfig`] and its tables), and its default is
//! `Default::default()` serialized with the same `toml` crate that parses
//! the file. `xtask` renders the result as the man pages `byteback.toml(5)`
//! and `byteback-server.toml(5)`; the tests below check that every key serde
//! accepts is documented, nested tables included, and nothing else is.
//!
//! It reads the client's and the store's structs, so it sits above both,
//! not in `config`, which both of them import.

use documented::DocumentedFields;
use serde::Serialize;

use crate::client::config::ClientConfig;
use crate::store::{LimitsConfig, ReplicateConfig, SandboxConfig, ServerConfig, SuspectConfig};

/// One key of a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Its name, as written in the file.
    pub name: &'static str,
    /// What it does: the field's doc comment (Markdown: `code` spans,
    /// paragraphs separated by a blank line).
    pub doc: &'static str,
    /// Its default as TOML (`"10m"`, `5`, `["/"]`), or `None` when it is
    /// unset by default (the doc says what that means).
    pub default: Option<String>,
}

/// The top level of a file, or one of its tables (`[sandbox]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// `None` for the top level, else the table's name.
    pub table: Option<&'static str>,
    /// What the table is for (its field's comment); empty for the top level.
    pub doc: &'static str,
    /// Its keys, in the order of the struct's fields.
    pub keys: Vec<Key>,
}

/// `/etc/byteback/config.toml`, the client's file.
pub fn client() -> Vec<Section> {
    vec![section::<ClientConfig>(None, "", &[])]
}

/// `<store>/.byteback/server.toml`, the server's file.
pub fn server() -> Vec<Section> {
    let doc = |field| ServerConfig::get_field_docs(field).unwrap_or_default();
    vec![
        section::<ServerConfig>(None, "", &["sandbox", "replicate", "limits", "suspect"]),
        section::<SandboxConfig>(Some("sandbox"), doc("sandbox"), &[]),
        section::<ReplicateConfig>(Some("replicate"), doc("replicate"), &[]),
        section::<LimitsConfig>(Some("limits"), doc("limits"), &[]),
        section::<SuspectConfig>(Some("suspect"), doc("suspect"), &[]),
    ]
}

/// The keys of `T`, less its fields that are tables of their own.
fn section<T>(table: Option<&'static str>, doc: &'static str, tables: &[&str]) -> Section
where
    T: DocumentedFields + Serialize + Default,
{
    let defaults = defaults::<T>();
    let keys = T::FIELD_NAMES
        .iter()
        .zip(T::FIELD_DOCS)
        .filter(|(name, _)| !tables.contains(name))
        .map(|(&name, &doc)| Key {
            name,
            doc,
            default: defaults.get(name).map(ToString::to_string),
        })
        .collect();
    Section { table, doc, keys }
}

/// `T::default()` as the TOML table it is written as (a key left unset by
/// default is absent).
fn defaults<T: Serialize + Default>() -> toml::Table {
    toml::Table::try_from(T::default()).expect("a config's defaults serialize to TOML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserialize, Deserializer, Visitor};

    /// The keys serde accepts for `T`: the field list its derived
    /// `Deserialize` hands to `deserialize_struct` (with
    /// `deny_unknown_fields`, exactly the keys it accepts).
    fn accepted<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        struct Fields<'a>(&'a mut &'static [&'static str]);
        impl<'de> Deserializer<'de> for Fields<'_> {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(de::Error::custom("fields read"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Fields(&mut fields));
        assert!(
            !fields.is_empty(),
            "{} is not a struct",
            std::any::type_name::<T>()
        );
        fields.to_vec()
    }

    fn names(section: &Section) -> Vec<&'static str> {
        section.keys.iter().map(|k| k.name).collect()
    }

    /// Every key and table serde accepts is in the reference with a text,
    /// nothing else is, and each default is what `Default` serializes to.
    fn check<T: Serialize + Default + for<'de> Deserialize<'de>>(
        sections: &[Section],
        tables: &[(&str, Vec<&'static str>)],
    ) {
        let top = &sections[0];
        assert_eq!(top.table, None);
        let mut expected: Vec<&str> = accepted::<T>();
        expected.retain(|k| !tables.iter().any(|(t, _)| t == k));
        assert_eq!(names(top), expected, "top-level keys");
        let written = defaults::<T>();
        let table_names: Vec<&str> = tables.iter().map(|(t, _)| *t).collect();
        let written_tables: Vec<&str> = written
            .iter()
            .filter(|(_, v)| v.is_table())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            sorted(written_tables),
            sorted(table_names.clone()),
            "tables"
        );
        assert_eq!(
            sections[1..]
                .iter()
                .map(|s| s.table.unwrap())
                .collect::<Vec<_>>(),
            table_names,
            "sections"
        );
        for (section, (table, keys)) in sections[1..].iter().zip(tables) {
            assert_eq!(&names(section), keys, "keys of [{table}]");
            assert!(!section.doc.trim().is_empty(), "[{table}] has no text");
        }
        for section in sections {
            let values = match section.table {
                None => &written,
                Some(t) => written[t].as_table().unwrap(),
            };
            for key in &section.keys {
                let at = format!("{:?}.{}", section.table, key.name);
                assert!(!key.doc.trim().is_empty(), "{at} has no text");
                assert_eq!(
                    key.default,
                    values.get(key.name).map(ToString::to_string),
                    "{at}"
                );
            }
            for (name, value) in values.iter().filter(|(_, v)| !v.is_table()) {
                assert!(
                    section.keys.iter().any(|k| k.name == name),
                    "{:?}.{name} = {value} is written but not documented",
                    section.table
                );
            }
        }
    }

    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort_unstable();
        v
    }

    #[test]
    fn every_client_key_is_documented() {
        check::<ClientConfig>(&client(), &[]);
        let keys = names(&client()[0]);
        for key in ["destination", "name", "bwlimit", "nice", "ionice"] {
            assert!(
                keys.contains(&key),
                "{key}: unset by default, still documented"
            );
        }
    }

    #[test]
    fn every_server_key_is_documented() {
        check::<ServerConfig>(
            &server(),
            &[
                ("sandbox", accepted::<SandboxConfig>()),
                ("replicate", accepted::<ReplicateConfig>()),
                ("limits", accepted::<LimitsConfig>()),
                ("suspect", accepted::<SuspectConfig>()),
            ],
        );
        assert!(names(&server()[0]).contains(&"log_socket"));
        assert_eq!(names(&server()[3]), ["bandwidth", "windows"]);
    }

    /// The defaults as a reader sees them, spelled the way the file takes them.
    #[test]
    fn defaults_are_written_as_toml() {
        let client = client();
        let default = |name: &str| {
            client[0]
                .keys
                .iter()
                .find(|k| k.name == name)
                .unwrap()
                .default
                .clone()
        };
        assert_eq!(default("retry_pause").as_deref(), Some("\"10m\""));
        assert_eq!(default("sources").as_deref(), Some("[\"/\"]"));
        assert_eq!(default("retry_attempts").as_deref(), Some("5"));
        assert_eq!(default("destination"), None);
        let server = server();
        let min_age = server[0].keys.iter().find(|k| k.name == "min_age").unwrap();
        assert_eq!(min_age.default.as_deref(), Some("\"7 days\""));
        let to = &server[2].keys[0];
        assert_eq!((to.name, to.default.as_deref()), ("to", Some("[]")));
    }
}
