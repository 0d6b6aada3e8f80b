//! Conformance suites: one per port, written once over the port trait, run against every
//! adapter. Each suite is a macro that expands to one named `#[test]` per behaviour, so a
//! failure names the adapter and the behaviour:
//!
//! ```ignore
//! mod sqlite_queue {
//!     k8or_tests::queue_conformance!(crate::fresh_queue());
//! }
//! ```
//!
//! The argument is an async expression (evaluated afresh in every test) giving an
//! `Arc<dyn Queue>` (or `Tables`, `Blobs`, `ViewPort`). Tests name their own queues, tables
//! and buckets uniquely, so adapters may share a server; a ViewPort factory must give a
//! fresh database, since WordPress tables cannot be namespaced.
//!
//! Waits are loops with deadlines, never assertions on elapsed time, and visibility
//! timeouts are whole seconds, so a backend with a coarse clock and long poll passes too.

pub mod blobs;
pub mod queue;
pub mod tables;
pub mod viewport;

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

thread_local! {
    /// What the running test's factory asked to keep (temporary folders), dropped when the
    /// test ends. Each test runs `run` on its own thread, and the factory runs in the
    /// future `run` blocks on, so a thread-local belongs to exactly one test.
    static KEPT: RefCell<Vec<Box<dyn Any>>> = RefCell::new(Vec::new());
}

/// Keeps `guard` (say, a `TempDir` the port's files live in) until the test that called
/// the factory ends. A failed test keeps it, for a look afterwards.
pub fn keep_until_test_ends<T: 'static>(guard: T) {
    KEPT.with(|kept| kept.borrow_mut().push(Box::new(guard)));
}

/// Runs one test body on a fresh multi-threaded runtime (the macros' tests are plain
/// `#[test]` functions, so callers need no runtime attribute of their own).
pub fn run<F: Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(body);
    drop(runtime);
    KEPT.with(|kept| kept.borrow_mut().clear());
}

/// A name no other test uses: `k8or-ct-<tag>-<12 hex>`, valid for queues, tables and
/// buckets alike (lowercase letters, digits and dashes).
pub fn unique(tag: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("k8or-ct-{tag}-{}", &id[..12])
}

/// Polls `attempt` until it yields a value, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loop's time limit, for loops that keep state between attempts (where `eventually`'s
/// closure cannot): call `tick` at the end of each turn.
pub struct Deadline {
    what: String,
    limit: Duration,
    at: tokio::time::Instant,
}

impl Deadline {
    pub fn new(what: impl Into<String>, limit: Duration) -> Self {
        Self {
            what: what.into(),
            limit,
            at: tokio::time::Instant::now() + limit,
        }
    }

    /// Panics if the limit has passed; otherwise pauses briefly.
    pub async fn tick(&self) {
        assert!(
            tokio::time::Instant::now() < self.at,
            "gave up after {:?} waiting for {}",
            self.limit,
            self.what
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr, $suite:ident, [$($name:ident),* $(,)?]) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(async {
                    let port = $factory.await;
                    $crate::conformance::$suite::$name(port).await;
                });
            }
        )*
    };
}
