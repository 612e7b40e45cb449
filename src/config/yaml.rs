//! A pass over the YAML document before it is read into a [`Config`](super::Config): it
//! refuses what serde would accept silently or expensively.
//!
//! - A key written twice in one mapping: serde keeps the last one and drops the first block.
//! - Aliases that expand past a budget of bytes: a small file of aliases to one long string
//!   would otherwise expand to gigabytes.
//!
//! The pass only counts and compares keys; it never copies a scalar, so an alias bomb costs
//! time up to the budget and no memory. Nesting is bounded by serde_yaml_ng (128 levels).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Every node costs this many bytes on top of its scalar text, so a bomb of empty nodes
/// counts too.
const NODE_COST: usize = 8;
/// Expanded bytes allowed on top of what the text itself costs.
const BUDGET_BASE: usize = 16 << 20;

/// What the pass refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape {
    /// A key written twice in one mapping, at these 1-based (line, column) places.
    DuplicateKey {
        key: String,
        first: Option<(usize, usize)>,
        second: Option<(usize, usize)>,
    },
    /// Aliases expand the document past `budget` bytes; where the pass stopped.
    TooLarge {
        budget: usize,
        at: Option<(usize, usize)>,
    },
}

/// The expanded-size budget for a text: generous for any file written without aliases.
pub(super) fn budget_for(text: &str) -> usize {
    BUDGET_BASE.saturating_add(text.len().saturating_mul(NODE_COST))
}

/// Checks the document's shape. Syntax errors are left to the real read, which reports them.
pub(super) fn check(text: &str, budget: usize) -> Result<(), Shape> {
    let walk = |stop_at: Option<usize>| {
        let state = Walk {
            spent: Cell::new(0),
            budget,
            keys_seen: Cell::new(0),
            stop_at,
            found: Cell::new(None),
        };
        let result = Node(&state).deserialize(serde_yaml_ng::Deserializer::from_str(text));
        (result, state.found.take())
    };
    let (result, found) = walk(None);
    let Err(error) = result else {
        return Ok(());
    };
    let at = location(&error);
    match found {
        Some(Found::Duplicate { key, first_ordinal }) => {
            // Walk again and stop at the first occurrence, to learn its place.
            let first = location_of(walk(Some(first_ordinal)).0);
            Err(Shape::DuplicateKey {
                key,
                first,
                second: at,
            })
        }
        Some(Found::OverBudget) => Err(Shape::TooLarge { budget, at }),
        Some(Found::Target) | None => Ok(()),
    }
}

fn location(error: &serde_yaml_ng::Error) -> Option<(usize, usize)> {
    error.location().map(|l| (l.line(), l.column()))
}

fn location_of(result: Result<(), serde_yaml_ng::Error>) -> Option<(usize, usize)> {
    result.err().as_ref().and_then(location)
}

/// Why the walk stopped early.
enum Found {
    Duplicate {
        key: String,
        first_ordinal: usize,
    },
    OverBudget,
    /// The key the second walk was looking for.
    Target,
}

struct Walk {
    spent: Cell<usize>,
    budget: usize,
    /// Keys visited so far, in document order: a key's ordinal names it across walks.
    keys_seen: Cell<usize>,
    stop_at: Option<usize>,
    found: Cell<Option<Found>>,
}

impl Walk {
    fn spend<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let spent = self.spent.get().saturating_add(bytes + NODE_COST);
        self.spent.set(spent);
        if spent > self.budget {
            self.found.set(Some(Found::OverBudget));
            return Err(E::custom("over budget"));
        }
        Ok(())
    }
}

/// Any node: scalars are counted, collections walked.
struct Node<'w>(&'w Walk);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! count_scalar {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, _: $ty) -> Result<(), E> {
            self.0.spend(0)
        }
    )*};
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }
    count_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
        visit_i128: i128, visit_u128: u128);
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.spend(v.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.spend(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.spend(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Node(self.0).deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Node(self.0).deserialize(d)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): count the tag, walk the value.
        let tag = Key {
            walk: self.0,
            ordinal: None,
            seen: None,
        };
        let (tag, variant) = data.variant_seed(tag)?;
        self.0.spend(tag.len())?;
        de::VariantAccess::newtype_variant_seed(variant, Node(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.spend(0)?;
        while seq.next_element_seed(Node(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.spend(0)?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        while let Some(()) = map.next_key_seed(UniqueKey(self.0, &mut seen))? {
            map.next_value_seed(Node(self.0))?;
        }
        Ok(())
    }
}

/// A mapping key, compared with the keys before it in the same mapping.
struct UniqueKey<'w, 's>(&'w Walk, &'s mut HashMap<String, usize>);

impl<'de> DeserializeSeed<'de> for UniqueKey<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let UniqueKey(walk, seen) = self;
        let ordinal = walk.keys_seen.get();
        walk.keys_seen.set(ordinal + 1);
        let key = Key {
            walk,
            ordinal: Some(ordinal),
            seen: Some(seen),
        };
        d.deserialize_any(key).map(|_| ())
    }
}

/// Reads a key as text; a collection used as a key is walked and named by its position.
struct Key<'w, 's> {
    walk: &'w Walk,
    /// The key's ordinal, for a mapping key (a tag has none).
    ordinal: Option<usize>,
    /// The keys before it in its mapping, for a mapping key.
    seen: Option<&'s mut HashMap<String, usize>>,
}

impl Key<'_, '_> {
    /// Checks the key while it is being read, so serde_yaml_ng gives the error the key's place.
    fn text<E: de::Error>(self, text: String) -> Result<String, E> {
        self.walk.spend(text.len())?;
        if self.ordinal.is_some() && self.ordinal == self.walk.stop_at {
            self.walk.found.set(Some(Found::Target));
            return Err(E::custom("found"));
        }
        if let (Some(seen), Some(ordinal)) = (self.seen, self.ordinal) {
            if let Some(&first_ordinal) = seen.get(&text) {
                let key = text;
                self.walk
                    .found
                    .set(Some(Found::Duplicate { key, first_ordinal }));
                return Err(E::custom("duplicate key"));
            }
            seen.insert(text.clone(), ordinal);
        }
        Ok(text)
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.text(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.text(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.text(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.text(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.text(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.text("~".into())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<String, A::Error> {
        let ordinal = self.walk.keys_seen.get();
        Node(self.walk).visit_seq(seq)?;
        self.text(format!("<sequence #{ordinal}>"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<String, A::Error> {
        let ordinal = self.walk.keys_seen.get();
        Node(self.walk).visit_map(map)?;
        self.text(format!("<mapping #{ordinal}>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Result<(), Shape> {
        check(text, budget_for(text))
    }

    #[test]
    fn duplicate_keys_are_found_with_both_places() {
        for (text, key, first, second) in [
            (
                "services:\n  a:\n    paths: [x]\n  a:\n    paths: [y]\n",
                "a",
                (2, 3),
                (4, 3),
            ),
            ("services: {a: {}, b: {}, a: {}}\n", "a", (1, 12), (1, 26)),
            (
                "services:\n  a:\n    paths: [x]\n    paths: [y]\n",
                "paths",
                (3, 5),
                (4, 5),
            ),
            ("a: 1\nb: 2\n\"a\": 3\n", "a", (1, 1), (3, 1)),
        ] {
            assert_eq!(
                shape(text),
                Err(Shape::DuplicateKey {
                    key: key.into(),
                    first: Some(first),
                    second: Some(second)
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn equal_keys_in_different_mappings_are_fine() {
        let text = "services:\n  a: {paths: [x]}\n  b: {paths: [x]}\ngroups:\n  a: {paths: [x]}\n";
        assert_eq!(shape(text), Ok(()));
        assert_eq!(shape("x: &m {k: 1}\ny: *m\nz: *m\n"), Ok(()));
    }

    #[test]
    fn alias_expansion_is_bounded_in_bytes() {
        let long = "x".repeat(100_000);
        let mut text = format!("a: &a \"{long}\"\nb: &b [");
        text.push_str(&["*a"; 100].join(", "));
        text.push_str("]\nc: [");
        text.push_str(&["*b"; 100].join(", "));
        text.push_str("]\n");
        // 10,000 copies of 100 kB: 1 GB expanded from a 100 kB file.
        let found = shape(&text);
        assert!(
            matches!(found, Err(Shape::TooLarge { at: Some(_), .. })),
            "{found:?}"
        );
        // The same text without the last level fits.
        let cut = &text[..text.find("\nc:").unwrap()];
        assert_eq!(shape(cut), Ok(()));
    }

    #[test]
    fn syntax_errors_are_left_to_the_real_read() {
        assert_eq!(shape("a: [\n"), Ok(()));
        assert_eq!(shape("just a scalar"), Ok(()));
    }
}
