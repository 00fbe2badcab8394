//! Connections per client address: a client may hold at most a set number of connections at
//! once (RTMP, RTMPS and SRT together), so that one address opening connections it never
//! uses (a slowloris client, a scanner) cannot take the tasks and buffers meant for
//! encoders. A connection holds a [`Slot`] while it is open; dropping it frees the place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Connections open per client address, and the most one address may hold.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place; the place is freed when it is dropped.
#[derive(Debug)]
pub struct Slot {
    limit: Arc<ConnectionLimit>,
    address: IpAddr,
}

impl ConnectionLimit {
    /// At most `max` connections per address; 0: no limit.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more connection from `address`, or `None` when it holds the most.
    pub fn acquire(self: &Arc<Self>, address: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_default();
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            limit: Arc::clone(self),
            address,
        })
    }

    /// Connections `address` holds now.
    pub fn open(&self, address: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&address).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                // Addresses with no connection are forgotten: the map holds only open ones.
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_the_limit_and_dropping_frees_a_place() {
        let limit = Arc::new(ConnectionLimit::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let first = limit.acquire(a).unwrap();
        let _second = limit.acquire(a).unwrap();
        assert!(limit.acquire(a).is_none(), "a third from the same address");
        // Another address is not affected.
        let _other = limit.acquire(b).unwrap();
        drop(first);
        assert_eq!(limit.open(a), 1);
        assert!(limit.acquire(a).is_some());
        assert_eq!(limit.open(a), 1, "the slot taken above was dropped at once");
        drop(_second);
        assert_eq!(limit.open(a), 0);
        assert!(limit.open.lock().unwrap().get(&a).is_none(), "forgotten");
    }

    #[test]
    fn zero_is_no_limit() {
        let limit = Arc::new(ConnectionLimit::new(0));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| limit.acquire(a).unwrap()).collect();
        assert_eq!(limit.open(a), 1000);
        drop(slots);
        assert_eq!(limit.open(a), 0);
    }
}
