//! Counting what each client address holds (connections, requests in flight) against a cap.
//! An address's entry lives only while it holds something, so idle clients cost nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct PerClient {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<PerClient> {
        Arc::new(PerClient { max, held: Mutex::new(HashMap::new()) })
    }

    /// One more for `client`, or `None` if it holds its cap.
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { owner: Arc::clone(self), client })
    }

    /// Whether no client holds anything.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// One unit a client holds; given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_cannot_take_more_than_its_cap() {
        let limits = PerClient::new(2);
        let client: IpAddr = "192.0.2.7".parse().expect("ip");
        let (a, b) = (limits.take(client).expect("1"), limits.take(client).expect("2"));
        assert!(limits.take(client).is_none());
        assert!(limits.take("192.0.2.8".parse().expect("ip")).is_some(), "others are untouched");
        drop((a, b));
        assert!(limits.is_empty(), "no entry is left for idle clients");
        assert!(limits.take(client).is_some());
    }
}
