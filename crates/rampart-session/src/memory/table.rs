//! An open-addressing hash set of slot numbers: four bytes a bucket.
//!
//! The table stores only slot numbers; the caller says how to hash the entry in a slot and
//! whether a slot is the one sought (by comparing the real key held in the slot), so a hash
//! collision costs a probe, never a wrong answer. Linear probing, at most three quarters
//! full, with backward-shift deletion (no tombstones).

const EMPTY: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(super) struct SlotTable {
    buckets: Vec<u32>,
    len: usize,
}

impl SlotTable {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The home bucket of `hash` (Fibonacci hashing: the top bits of a multiplication).
    fn home(&self, hash: u64) -> usize {
        let bits = self.buckets.len().trailing_zeros();
        if bits == 0 {
            return 0;
        }
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    fn find_bucket(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut b = self.home(hash);
        loop {
            let slot = *self.buckets.get(b)?;
            if slot == EMPTY {
                return None;
            }
            if is(slot) {
                return Some(b);
            }
            b = (b + 1) & self.mask();
        }
    }

    /// The slot with this hash for which `is` holds.
    pub(super) fn find(&self, hash: u64, is: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_bucket(hash, is).and_then(|b| self.buckets.get(b).copied())
    }

    /// Puts `slot` in place of the entry with this hash for which `is` holds; whether there
    /// was one.
    pub(super) fn replace(&mut self, hash: u64, is: impl FnMut(u32) -> bool, slot: u32) -> bool {
        match self.find_bucket(hash, is).and_then(|b| self.buckets.get_mut(b)) {
            Some(entry) => {
                *entry = slot;
                true
            }
            None => false,
        }
    }

    /// Adds `slot` (the caller knows no equal entry is present). `hash_of` gives the hash of
    /// any stored slot, for growing.
    pub(super) fn insert(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow(&hash_of);
        }
        self.place(hash, slot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, slot: u32) {
        let mask = self.mask();
        let mut b = self.home(hash);
        while let Some(entry) = self.buckets.get_mut(b) {
            if *entry == EMPTY {
                *entry = slot;
                return;
            }
            b = (b + 1) & mask;
        }
    }

    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let size = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; size]);
        for slot in old.into_iter().filter(|&s| s != EMPTY) {
            self.place(hash_of(slot), slot);
        }
    }

    /// Removes the entry with this hash for which `is` holds; whether there was one.
    pub(super) fn remove(
        &mut self,
        hash: u64,
        is: impl FnMut(u32) -> bool,
        hash_of: impl Fn(u32) -> u64,
    ) -> bool {
        let Some(mut hole) = self.find_bucket(hash, is) else { return false };
        let mask = self.mask();
        let mut b = hole;
        loop {
            b = (b + 1) & mask;
            let slot = self.buckets.get(b).copied().unwrap_or(EMPTY);
            if slot == EMPTY {
                break;
            }
            let home = self.home(hash_of(slot));
            // Move the entry back into the hole unless its home lies cyclically in (hole, b].
            let stays = if hole <= b { hole < home && home <= b } else { hole < home || home <= b };
            if !stays {
                self.buckets.swap(hole, b);
                hole = b;
            }
        }
        if let Some(entry) = self.buckets.get_mut(hole) {
            *entry = EMPTY;
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn behaves_like_a_map_under_colliding_hashes() {
        // Slot s has hash s % 7: many collisions and long runs, wrapping around the end.
        let hash_of = |s: u32| u64::from(s % 7).wrapping_mul(0x1234_5678_9abc_def1);
        let mut t = SlotTable::default();
        let mut model: HashMap<u32, ()> = HashMap::new();
        let mut x: u64 = 1;
        for round in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (x % 300) as u32;
            let present = t.find(hash_of(s), |o| o == s).is_some();
            assert_eq!(present, model.contains_key(&s), "round {round}");
            if present {
                assert!(t.remove(hash_of(s), |o| o == s, hash_of));
                model.remove(&s);
            } else {
                t.insert(hash_of(s), s, hash_of);
                model.insert(s, ());
            }
            assert_eq!(t.len(), model.len());
        }
        for s in 0..300 {
            assert_eq!(t.find(hash_of(s), |o| o == s).is_some(), model.contains_key(&s));
        }
        assert!(!t.remove(hash_of(1000), |o| o == 1000, hash_of));
    }

    #[test]
    fn replace_swaps_the_matching_entry() {
        let hash_of = |_: u32| 42;
        let mut t = SlotTable::default();
        t.insert(42, 1, hash_of);
        t.insert(42, 2, hash_of);
        assert!(t.replace(42, |o| o == 2, 3));
        assert_eq!(t.find(42, |o| o == 3), Some(3));
        assert_eq!(t.find(42, |o| o == 2), None);
        assert!(!t.replace(42, |o| o == 9, 4));
    }
}
