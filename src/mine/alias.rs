//! Old cluster ids after a change of the signature rules.
//!
//! Cluster ids derive from signatures (`signature.rs`), so new rules give the same root
//! cause a new id. A user's cases, `--target` flags and notes name the old one. The first
//! mine under new rules signs the stored failures again; an old cluster none of whose
//! failures stayed becomes an alias of the cluster most of them moved to. Everything that
//! takes a cluster id resolves it through [`Aliases`]; nothing is renamed in place.

use std::collections::{BTreeMap, HashMap, HashSet};

/// An old cluster id and the cluster it now resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub old_id: String,
    pub new_id: String,
    /// Why, in words: the rules changed and how many failures moved.
    pub reason: String,
}

/// Where a failure is: its file's key and its trace's place in the file.
pub type Place = (String, usize);

/// The aliases a re-signing makes. `before`: each re-signed failure's cluster under the old
/// rules; `after`: its cluster now; `alive`: every cluster that has a member now (failures
/// not re-signed included). An old cluster with a member left keeps its id (no alias); one
/// with none resolves to the new cluster most of its failures moved to (ties: the smallest
/// id, so two machines agree).
pub fn after_resigning(
    before: &HashMap<Place, String>,
    after: &HashMap<Place, String>,
    alive: &HashSet<String>,
    rules: (u32, u32),
) -> Vec<Alias> {
    let mut moved: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut total: HashMap<&str, usize> = HashMap::new();
    for (place, old) in before {
        *total.entry(old.as_str()).or_default() += 1;
        if let Some(new) = after.get(place) {
            *moved.entry(old.as_str()).or_default().entry(new.as_str()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (old, targets) in moved {
        if alive.contains(old) {
            continue;
        }
        // Most failures first, then the smallest id (BTreeMap order).
        let Some((new, n)) = targets.iter().fold(None::<(&str, usize)>, |best, (id, n)| match best {
            Some((_, m)) if m >= *n => best,
            _ => Some((id, *n)),
        }) else {
            continue;
        };
        let of = total.get(old).copied().unwrap_or(n);
        out.push(Alias {
            old_id: old.to_string(),
            new_id: new.to_string(),
            reason: format!(
                "signature rules {} -> {}: {n} of its {of} failure(s) now sign into {new}",
                rules.0, rules.1
            ),
        });
    }
    out
}

/// A cluster id as a person gave it, resolved ([`Aliases::given`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// What to match cluster ids against: the given id or prefix, or the cluster an old id became.
    pub id: String,
    /// The old id the given one named, when it named an alias (say so to the person).
    pub was: Option<String>,
}

/// Every alias the store holds, resolved transitively (an id aliased twice over rules
/// changes resolves to the newest).
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    map: HashMap<String, String>,
}

impl Aliases {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Aliases {
        Aliases { map: pairs.into_iter().collect() }
    }

    /// The cluster `id` resolves to: itself when it is no alias.
    pub fn resolve(&self, id: &str) -> String {
        let mut at = id;
        // A cycle cannot be written by `after_resigning` (an alias's old id has no member,
        // its new one has); the bound only keeps a hand-edited store from hanging us.
        for _ in 0..=self.map.len() {
            match self.map.get(at) {
                Some(next) if next != at => at = next,
                _ => break,
            }
        }
        at.to_string()
    }

    /// The old id `given` names (the whole id, or a prefix with or without `k-`), when it
    /// names exactly one alias.
    pub fn old_id(&self, given: &str) -> Option<&str> {
        let given = given.trim_start_matches("k-");
        let mut hits = self.map.keys().filter(|old| old.trim_start_matches("k-").starts_with(given));
        let first = hits.next()?;
        hits.next().is_none().then_some(first.as_str())
    }

    /// The one place a cluster id a person gives (`clusters ID`, `cases --cluster`, `eval
    /// --cluster`, `gate --target`, `run --target`) is resolved. An id or prefix of a cluster
    /// in `live` (the clusters with members, or the clusters the loaded cases name) is taken
    /// as given; otherwise an alias's old id, whole or a prefix, names the cluster it became.
    pub fn given<'a>(&self, given: &str, live: impl IntoIterator<Item = &'a str>) -> Named {
        let bare = given.trim_start_matches("k-");
        let is_live = live.into_iter().any(|id| id.starts_with(given) || id.trim_start_matches("k-").starts_with(bare));
        match self.old_id(given).filter(|_| !is_live) {
            Some(old) => Named { id: self.resolve(old), was: Some(old.to_string()) },
            None => Named { id: given.to_string(), was: None },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(f: &str, i: usize) -> Place {
        (f.to_string(), i)
    }

    #[test]
    fn a_cluster_whose_failures_all_moved_is_an_alias() {
        let before: HashMap<Place, String> = [
            (place("a", 0), "k-old1".to_string()),
            (place("b", 0), "k-old2".to_string()),
            (place("c", 0), "k-old3".to_string()),
            (place("d", 0), "k-old3".to_string()),
        ]
        .into();
        let after: HashMap<Place, String> = [
            (place("a", 0), "k-new".to_string()),
            (place("b", 0), "k-new".to_string()),
            (place("c", 0), "k-old3".to_string()),
            (place("d", 0), "k-new".to_string()),
        ]
        .into();
        let alive: HashSet<String> = after.values().cloned().collect();
        let aliases = after_resigning(&before, &after, &alive, (1, 2));
        let pairs: Vec<(&str, &str)> = aliases.iter().map(|a| (a.old_id.as_str(), a.new_id.as_str())).collect();
        // k-old3 still has a member: it keeps its id.
        assert_eq!(pairs, [("k-old1", "k-new"), ("k-old2", "k-new")]);
        assert!(aliases[0].reason.contains("1 of its 1 failure(s)"), "{}", aliases[0].reason);
        let resolved = Aliases::new(aliases.into_iter().map(|a| (a.old_id, a.new_id)));
        assert_eq!(resolved.resolve("k-old1"), "k-new");
        assert_eq!(resolved.resolve("k-new"), "k-new");
        assert_eq!(resolved.old_id("old2"), Some("k-old2"));
        assert_eq!(resolved.old_id("k-old"), None, "ambiguous");
    }

    #[test]
    fn a_given_id_names_a_live_cluster_before_an_alias() {
        let a = Aliases::new([("k-ab12".into(), "k-cd34".into())]);
        let named = a.given("ab1", ["k-cd34"]);
        assert_eq!(named, Named { id: "k-cd34".into(), was: Some("k-ab12".into()) });
        assert_eq!(a.given("k-ab12", ["k-cd34"]).id, "k-cd34");
        // A prefix of a cluster that has members is that cluster's, even when an old id shares it.
        assert_eq!(a.given("k-ab", ["k-ab99", "k-cd34"]), Named { id: "k-ab".into(), was: None });
        assert_eq!(a.given("cd3", ["k-cd34"]), Named { id: "cd3".into(), was: None });
    }

    #[test]
    fn chains_resolve_to_the_newest_and_cycles_end() {
        let a = Aliases::new([("k-1".into(), "k-2".into()), ("k-2".into(), "k-3".into())]);
        assert_eq!(a.resolve("k-1"), "k-3");
        let cyc = Aliases::new([("k-1".into(), "k-2".into()), ("k-2".into(), "k-1".into())]);
        let _ = cyc.resolve("k-1");
    }
}
