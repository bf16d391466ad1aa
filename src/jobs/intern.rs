//! One shared copy of the strings that repeat across Jobs.
//!
//! With 100,000 Jobs in the index, most of a record's text is the same from Job to Job: its
//! template, its source, who asked for it, its SQS queue, the controller's reason and message, and
//! above all its whole label set (managed-by, instance, template, source, queued: the same five
//! labels on every Job of a template). Each such string is kept once and shared (`Arc`), so a
//! record pays 16 bytes for it instead of a heap block of its own (at least 32 bytes with glibc's
//! malloc, plus the 24-byte `String`). Measured on the release build, this and the other record
//! changes took the index from about 1.0 KiB to well under 0.75 KiB per Job (docs/benchmarks.md,
//! "Where the bytes go").
//!
//! Entries nobody else holds any more are dropped when the table has doubled since the last
//! sweep, so strings that stop being used (a deleted template, a one-off label value) do not
//! accumulate: the cost of a sweep is paid once per doubling, O(1) per insert on average.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, Hash, Hasher, RandomState},
    sync::{Arc, LazyLock, Mutex},
};

/// A label set, sorted by key, shared by every Job that carries exactly these labels.
pub type LabelSet = Arc<[(Box<str>, Box<str>)]>;

struct Table<T: ?Sized> {
    entries: HashSet<Arc<T>>,
    /// Entries left after the last sweep: the next sweep runs at twice as many.
    after_sweep: usize,
}

impl<T: ?Sized> Default for Table<T> {
    fn default() -> Self {
        Self { entries: HashSet::new(), after_sweep: 0 }
    }
}

impl<T: ?Sized + Eq + std::hash::Hash> Table<T> {
    fn get_or_insert(&mut self, value: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(found) = self.entries.get(value) {
            return found.clone();
        }
        if self.entries.len() >= 2 * self.after_sweep.max(512) {
            self.entries.retain(|e| Arc::strong_count(e) > 1);
            self.after_sweep = self.entries.len();
        }
        let made = make();
        self.entries.insert(made.clone());
        made
    }
}

/// Label sets by a hash of their pairs, so that a Job's labels are looked up from its decoded
/// map without building a copy first (at start-up that is every Job of the relist).
#[derive(Default)]
struct LabelTable {
    hasher: RandomState,
    buckets: HashMap<u64, Vec<LabelSet>>,
    len: usize,
    after_sweep: usize,
}

impl LabelTable {
    fn get_or_insert<'a>(&mut self, pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> LabelSet {
        let mut hasher = self.hasher.build_hasher();
        for (k, v) in pairs.clone() {
            (k, v).hash(&mut hasher);
        }
        let hash = hasher.finish();
        let same = |set: &LabelSet| {
            let mut given = pairs.clone();
            set.iter().all(|(k, v)| given.next().is_some_and(|(gk, gv)| **k == *gk && **v == *gv))
                && given.next().is_none()
        };
        if let Some(found) = self.buckets.get(&hash).and_then(|b| b.iter().find(|s| same(s))) {
            return found.clone();
        }
        if self.len >= 2 * self.after_sweep.max(512) {
            self.buckets.retain(|_, bucket| {
                bucket.retain(|set| Arc::strong_count(set) > 1);
                !bucket.is_empty()
            });
            self.len = self.buckets.values().map(Vec::len).sum();
            self.after_sweep = self.len;
        }
        let made: LabelSet = pairs.map(|(k, v)| (Box::from(k), Box::from(v))).collect();
        self.buckets.entry(hash).or_default().push(made.clone());
        self.len += 1;
        made
    }
}

#[derive(Default)]
struct Interner {
    strings: Table<str>,
    labels: LabelTable,
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(Mutex::default);

fn with<R>(f: impl FnOnce(&mut Interner) -> R) -> R {
    f(&mut INTERNER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// The shared copy of `value`.
pub fn string(value: &str) -> Arc<str> {
    with(|i| i.strings.get_or_insert(value, || Arc::from(value)))
}

/// The shared copy of a label set; `pairs` must come sorted by key (a BTreeMap's order).
pub fn labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> LabelSet {
    if pairs.clone().next().is_none() {
        static EMPTY: LazyLock<LabelSet> = LazyLock::new(|| Arc::from(Vec::new()));
        return EMPTY.clone();
    }
    with(|i| i.labels.get_or_insert(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = string("interned-template-a");
        let b = string(&String::from("interned-template-a"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "interned-template-a");
    }

    #[test]
    fn equal_label_sets_share_one_copy_and_different_ones_do_not() {
        let set = |v: &'static str| [("k", v), ("z", "1")];
        let (a, b, c) = (labels(set("x").into_iter()), labels(set("x").into_iter()), labels(set("y").into_iter()));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a.len(), 2);
        let shorter = labels([("k", "x")].into_iter());
        assert!(!Arc::ptr_eq(&a, &shorter), "a prefix is another set");
        assert_eq!(shorter.len(), 1);
        assert!(labels(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_label_sweep_drops_only_sets_nobody_holds() {
        let mut table = LabelTable::default();
        let kept = table.get_or_insert([("kept", "1")].into_iter());
        for i in 0..2000 {
            let v = format!("{i}");
            table.get_or_insert([("gone", v.as_str())].into_iter());
        }
        assert!(table.len < 1100, "swept: {}", table.len);
        assert!(Arc::ptr_eq(&kept, &table.get_or_insert([("kept", "1")].into_iter())));
    }

    #[test]
    fn a_sweep_drops_only_entries_nobody_holds() {
        let mut table: Table<str> = Table::default();
        let kept = table.get_or_insert("kept", || Arc::from("kept"));
        for i in 0..2000 {
            let s = format!("gone-{i}");
            table.get_or_insert(&s, || Arc::from(s.as_str()));
        }
        assert!(table.entries.len() < 1100, "swept: {}", table.entries.len());
        assert!(table.entries.contains("kept"));
        assert!(Arc::ptr_eq(&kept, &table.get_or_insert("kept", || Arc::from("other"))));
    }
}
