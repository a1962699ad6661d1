//! Open server-streaming calls per principal. A [`WatchPermit`] is one open
//! stream; it travels with the response body and frees its slot when dropped
//! (the stream ended, the client went away, or the call failed). Principals
//! with no open stream have no entry.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

/// Open streams by principal, at most `per_principal` each (0: no limit).
#[derive(Debug)]
pub struct WatchSlots {
    per_principal: u32,
    open: Mutex<HashMap<String, u32>>,
}

impl WatchSlots {
    pub fn new(per_principal: u32) -> Arc<Self> {
        Arc::new(WatchSlots {
            per_principal,
            open: Mutex::default(),
        })
    }

    /// A slot for one more stream of `principal`, or `None` when it has
    /// `per_principal` open already.
    pub fn acquire(self: &Arc<Self>, principal: &str) -> Option<WatchPermit> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(principal.to_string()).or_insert(0);
        if self.per_principal > 0 && *count >= self.per_principal {
            return None;
        }
        *count += 1;
        Some(WatchPermit {
            slots: self.clone(),
            principal: principal.to_string(),
        })
    }

    /// The streams `principal` has open.
    pub fn open(&self, principal: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(principal).copied().unwrap_or(0)
    }

    /// Principals with at least one open stream.
    pub fn principals(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One open stream; frees its slot when dropped.
#[derive(Debug)]
pub struct WatchPermit {
    slots: Arc<WatchSlots>,
    principal: String,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_principal_and_freed_on_drop() {
        let slots = WatchSlots::new(2);
        let first = slots.acquire("alice").unwrap();
        let _second = slots.acquire("alice").unwrap();
        assert!(slots.acquire("alice").is_none());
        assert_eq!(slots.open("alice"), 2);
        let _other = slots.acquire("bob").unwrap();
        drop(first);
        let _third = slots.acquire("alice").unwrap();
        assert!(slots.acquire("alice").is_none());
        // A refused principal without open streams leaves no entry behind.
        let none = WatchSlots::new(0);
        drop(none.acquire("carol").unwrap());
        assert_eq!(none.principals(), 0);
    }

    #[test]
    fn principals_without_open_streams_have_no_entry() {
        let slots = WatchSlots::new(1);
        for i in 0..1000 {
            drop(slots.acquire(&format!("user_{i}")).unwrap());
        }
        assert_eq!(slots.principals(), 0);
    }
}
