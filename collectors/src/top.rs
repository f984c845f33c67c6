//! The sticky top-N selection of per-statement views (PostgreSQL's top statements, MySQL's top digests): which
//! rows of a ranked answer get series of their own, keeping the set of series stable while ranks shuffle.

use std::collections::HashSet;
use std::hash::Hash;

/// The sticky set of exported keys.
#[derive(Debug, Default)]
pub struct StickyTop<K> {
    limit: usize,
    selected: Vec<K>,
}

impl<K: Clone + Eq + Hash> StickyTop<K> {
    pub fn new(limit: usize) -> Self {
        StickyTop {
            limit,
            selected: Vec::new(),
        }
    }

    /// How many rows to ask for: twice the limit, the window in which a selected key keeps its place.
    pub fn window(&self) -> usize {
        self.limit.saturating_mul(2)
    }

    /// Keeps every selected key that is still within the window, then fills free places in rank order. A key
    /// therefore loses its series only when it falls out of the top 2N, not when it slips from rank N to N+1,
    /// and at most `limit` keys are ever exported. Returns the chosen rows in rank order.
    pub fn select<V: Clone>(&mut self, ranked: &[(K, V)]) -> Vec<(K, V)> {
        let in_window: HashSet<&K> = ranked.iter().map(|(key, _)| key).collect();
        self.selected.retain(|key| in_window.contains(key));
        for (key, _) in ranked {
            if self.selected.len() >= self.limit {
                break;
            }
            if !self.selected.contains(key) {
                self.selected.push(key.clone());
            }
        }
        let selected: HashSet<&K> = self.selected.iter().collect();
        ranked
            .iter()
            .filter(|(key, _)| selected.contains(key))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_place_inside_the_window_and_at_most_limit_are_chosen() {
        let mut top = StickyTop::new(2);
        assert_eq!(top.window(), 4);
        let first = top.select(&[("a", 9), ("b", 8), ("c", 7)]);
        assert_eq!(first, vec![("a", 9), ("b", 8)]);
        // b slips to third place but stays inside the window: still chosen, c does not take its place.
        let second = top.select(&[("a", 9), ("c", 8), ("b", 7), ("d", 6)]);
        assert_eq!(second, vec![("a", 9), ("b", 7)]);
        // b falls out of the window: the first free place goes to the best-ranked newcomer.
        let third = top.select(&[("c", 9), ("a", 8), ("d", 7)]);
        assert_eq!(third, vec![("c", 9), ("a", 8)]);
        assert!(StickyTop::<&str>::new(0).select(&[("a", 1)]).is_empty());
    }
}
