//! Which column each member of a stored event feeds, found in one pass over the event's
//! members (and its context's) instead of one scan of the members per column: the lake
//! writer's hot path reads every member of every event, and looking up 44 columns by key in
//! objects of a dozen or more members cost 5 % of its encoding's instructions
//! (`docs/bench-log/2026-11-to-12.md`).
//!
//! The tables are built from the schema's own column lists (`schema.rs`), so a column added
//! there is found here without a second list to keep in step.

use std::sync::LazyLock;

use inlet_segment::Nested;

use crate::schema::{CONTEXT_COLUMNS, ID_COLUMNS, JSON_COLUMNS, TIME_COLUMNS};

/// Keys bucketed by length: a lookup is a length switch and a compare or two.
#[derive(Debug)]
pub(crate) struct Keys<T> {
    by_len: Vec<Vec<(&'static str, T)>>,
}

impl<T: Copy> Keys<T> {
    fn new(entries: impl IntoIterator<Item = (&'static str, T)>) -> Keys<T> {
        let mut by_len: Vec<Vec<(&'static str, T)>> = Vec::new();
        for (key, value) in entries {
            if by_len.len() <= key.len() {
                by_len.resize_with(key.len() + 1, Vec::new);
            }
            assert!(by_len[key.len()].iter().all(|(k, _)| *k != key), "key {key:?} listed twice");
            by_len[key.len()].push((key, value));
        }
        Keys { by_len }
    }

    pub(crate) fn get(&self, key: &str) -> Option<T> {
        self.by_len.get(key.len())?.iter().find(|(k, _)| *k == key).map(|&(_, value)| value)
    }
}

/// Where a top-level member of the event goes; a key with none lands in `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopLevel {
    /// Index into `ID_COLUMNS`.
    Id(usize),
    /// Index into `TIME_COLUMNS`.
    Time(usize),
    /// Index into `JSON_COLUMNS` (`context` is one of them, and is also flattened).
    Json(usize),
}

pub(crate) static TOP_LEVEL: LazyLock<Keys<TopLevel>> = LazyLock::new(|| {
    let ids = ID_COLUMNS.iter().enumerate().map(|(i, (_, field))| (*field, TopLevel::Id(i)));
    let times = TIME_COLUMNS.iter().enumerate().map(|(i, (_, field))| (*field, TopLevel::Time(i)));
    let json = JSON_COLUMNS.iter().enumerate().map(|(i, field)| (*field, TopLevel::Json(i)));
    Keys::new(ids.chain(times).chain(json))
});

/// Where a member of `context` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InContext {
    /// A column of its own: index into `CONTEXT_COLUMNS`.
    Column(usize),
    /// An object (`page`, `campaign`, …) whose members feed columns: index into
    /// [`ContextIndex::inner`].
    Parent(usize),
}

#[derive(Debug)]
pub(crate) struct ContextIndex {
    pub(crate) top: Keys<InContext>,
    /// Per parent object: its member's key → index into `CONTEXT_COLUMNS`.
    pub(crate) inner: Vec<Keys<usize>>,
}

pub(crate) static CONTEXT: LazyLock<ContextIndex> = LazyLock::new(|| {
    let mut top = Vec::new();
    let mut parents: Vec<(&'static str, Vec<(&'static str, usize)>)> = Vec::new();
    for (column, &(_, path)) in CONTEXT_COLUMNS.iter().enumerate() {
        match *path {
            [key] => top.push((key, InContext::Column(column))),
            [outer, key] => match parents.iter_mut().find(|(name, _)| *name == outer) {
                Some((_, members)) => members.push((key, column)),
                None => parents.push((outer, vec![(key, column)])),
            },
            _ => unreachable!("context columns are one or two levels deep"),
        }
    }
    top.extend(parents.iter().enumerate().map(|(i, (name, _))| (*name, InContext::Parent(i))));
    ContextIndex { top: Keys::new(top), inner: parents.into_iter().map(|(_, members)| Keys::new(members)).collect() }
});

/// The objects of an event a row needs split: `context`, and inside it each parent object of
/// the context columns. Decoding a record with this splits them in the walk that splits the
/// event, instead of walking their text again to split them (`StoredRecord::decode_nested`).
pub static EVENT_NESTED: LazyLock<Nested> = LazyLock::new(|| {
    let mut parents: Vec<&'static str> = Vec::new();
    for &(_, path) in &CONTEXT_COLUMNS {
        if let [outer, _] = *path
            && !parents.contains(&outer)
        {
            parents.push(outer);
        }
    }
    let context = parents.into_iter().fold(Nested::NONE, |context, parent| context.with(parent, Nested::NONE));
    Nested::NONE.with("context", context)
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_field_is_found_at_its_column_and_nothing_else_is() {
        for (i, (_, field)) in ID_COLUMNS.iter().enumerate() {
            assert_eq!(TOP_LEVEL.get(field), Some(TopLevel::Id(i)));
        }
        for (i, (_, field)) in TIME_COLUMNS.iter().enumerate() {
            assert_eq!(TOP_LEVEL.get(field), Some(TopLevel::Time(i)));
        }
        for (i, field) in JSON_COLUMNS.iter().enumerate() {
            assert_eq!(TOP_LEVEL.get(field), Some(TopLevel::Json(i)));
        }
        for key in ["", "channel", "messageid", "timestamps", "contex", "a_key_longer_than_any_listed"] {
            assert_eq!(TOP_LEVEL.get(key), None, "{key:?}");
        }
        for (column, &(_, path)) in CONTEXT_COLUMNS.iter().enumerate() {
            let found = match *path {
                [key] => CONTEXT.top.get(key),
                [outer, key] => match CONTEXT.top.get(outer) {
                    Some(InContext::Parent(p)) => CONTEXT.inner[p].get(key).map(InContext::Column),
                    other => panic!("{outer:?} is not a parent: {other:?}"),
                },
                _ => unreachable!(),
            };
            assert_eq!(found, Some(InContext::Column(column)), "{path:?}");
        }
        assert_eq!(CONTEXT.top.get("traits"), None);
    }
}
