//! The event loop's table of connections: slots that are reused, each with a
//! generation that is bumped when its connection is removed. A [`ConnId`]
//! names a slot and a generation, so an id kept past its connection (a
//! timer, a dirty-list entry, the hub's output for a closed connection)
//! finds nothing instead of the next connection in the slot.
//!
//! It holds values and hands out ids; it knows nothing of sockets (the loop
//! registers a socket under the slot's token inside [`Slab::insert_with`]).

use crate::pusher::ConnId;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, reused last-freed first (warm in the caches).
    free: Vec<usize>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Store the value `make` builds for a fresh id; if it fails, the slot
    /// stays free and the error is returned.
    pub fn insert_with<E>(
        &mut self,
        make: impl FnOnce(ConnId) -> Result<T, E>,
    ) -> Result<ConnId, E> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            }
        };
        let id = ConnId::new(slot as u32, self.slots[slot].generation);
        match make(id) {
            Ok(value) => {
                self.slots[slot].value = Some(value);
                self.live += 1;
                Ok(id)
            }
            Err(e) => {
                self.free.push(slot);
                Err(e)
            }
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&T> {
        self.slots
            .get(id.slot())
            .filter(|s| s.generation == id.generation())
            .and_then(|s| s.value.as_ref())
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        self.slots
            .get_mut(id.slot())
            .filter(|s| s.generation == id.generation())
            .and_then(|s| s.value.as_mut())
    }

    /// Take the value out; the slot's generation moves on, so `id` (and any
    /// copy of it) is stale from now on.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self
            .slots
            .get_mut(id.slot())
            .filter(|s| s.generation == id.generation())?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.slot());
        self.live -= 1;
        Some(value)
    }

    /// The id of the value in `slot`, if there is one (a readiness event
    /// names the slot only).
    pub fn id_at(&self, slot: usize) -> Option<ConnId> {
        let s = self.slots.get(slot)?;
        s.value.as_ref()?;
        Some(ConnId::new(slot as u32, s.generation))
    }

    /// Every value with its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value
                .as_ref()
                .map(|v| (ConnId::new(i as u32, s.generation), v))
        })
    }

    /// Put `value` back under `id`, as the previous process image had it
    /// (`revurb upgrade`): the slot takes `id`'s generation. Gives the
    /// value back if the slot is taken. Call [`Slab::rebuild_free`] after
    /// the last one.
    pub fn restore(&mut self, id: ConnId, value: T) -> Result<(), T> {
        let slot = id.slot();
        while self.slots.len() <= slot {
            self.slots.push(Slot {
                generation: 0,
                value: None,
            });
        }
        let s = &mut self.slots[slot];
        if s.value.is_some() {
            return Err(value);
        }
        s.generation = id.generation();
        s.value = Some(value);
        self.live += 1;
        Ok(())
    }

    /// After [`Slab::restore`]: every empty slot is free.
    pub fn rebuild_free(&mut self) {
        self.free = (0..self.slots.len())
            .rev()
            .filter(|&i| self.slots[i].value.is_none())
            .collect();
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(slab: &mut Slab<&'static str>, v: &'static str) -> ConnId {
        slab.insert_with(|_| Ok::<_, ()>(v)).expect("insert")
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation() {
        let mut slab = Slab::default();
        let a = insert(&mut slab, "a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = insert(&mut slab, "b");
        assert_eq!(a.slot(), b.slot(), "the slot is reused");
        assert_ne!(a, b);
        assert_eq!(slab.get(a), None, "the old id finds nothing");
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.remove(a), None, "nor removes the new value");
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.id_at(b.slot()), Some(b));
    }

    #[test]
    fn a_removed_id_is_stale_before_the_slot_is_reused() {
        let mut slab = Slab::default();
        let a = insert(&mut slab, "a");
        slab.remove(a);
        assert_eq!(
            (slab.get(a), slab.id_at(a.slot()), slab.len()),
            (None, None, 0)
        );
    }

    #[test]
    fn a_failed_insert_leaves_the_slot_free() {
        let mut slab: Slab<&str> = Slab::default();
        let seen = std::cell::Cell::new(None);
        let err = slab.insert_with(|id| {
            seen.set(Some(id));
            Err::<&str, _>("register failed")
        });
        assert_eq!(err, Err("register failed"));
        assert_eq!(slab.len(), 0);
        let a = insert(&mut slab, "a");
        assert_eq!(Some(a), seen.get(), "the same slot, never seen by anyone");
    }

    #[test]
    fn restored_ids_are_live_and_the_gaps_free() {
        let mut slab: Slab<&'static str> = Slab::default();
        assert!(slab.restore(ConnId::new(3, 7), "c").is_ok());
        assert!(slab.restore(ConnId::new(1, 2), "a").is_ok());
        assert_eq!(slab.restore(ConnId::new(1, 5), "x"), Err("x"));
        slab.rebuild_free();
        assert_eq!(slab.get(ConnId::new(3, 7)), Some(&"c"));
        assert_eq!(slab.get(ConnId::new(3, 6)), None);
        assert_eq!(slab.len(), 2);
        let ids: Vec<ConnId> = (0..3).map(|_| insert(&mut slab, "new")).collect();
        let mut slots: Vec<usize> = ids.iter().map(|id| id.slot()).collect();
        slots.sort();
        assert_eq!(slots, vec![0, 2, 4]);
    }

    #[test]
    fn iter_lists_the_live_values() {
        let mut slab = Slab::default();
        let a = insert(&mut slab, "a");
        let b = insert(&mut slab, "b");
        let c = insert(&mut slab, "c");
        slab.remove(b);
        assert_eq!(slab.iter().collect::<Vec<_>>(), [(a, &"a"), (c, &"c")]);
        assert_eq!(slab.len(), 2);
    }
}
