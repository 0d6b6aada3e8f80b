//! Long polls of this process, woken when a message of their queue becomes visible, so a
//! message sent here is received at once rather than at the next poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// The queue's notifier, made on first use.
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.0.lock().expect("wakers lock");
        if let Some(n) = map.get(queue) {
            return n.clone();
        }
        map.entry(queue.to_owned()).or_default().clone()
    }

    /// Wakes every long poll of the queue now waiting.
    pub fn wake(&self, queue: &str) {
        let map = self.0.lock().expect("wakers lock");
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }
}
