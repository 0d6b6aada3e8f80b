//! The binaries' allocator: mimalloc (each binary's `#[global_allocator]`), set up here.
//!
//! The stages allocate and free many small JSON values and strings per job: with glibc's
//! malloc that was ~15% of the pipeline's CPU (perf), and mimalloc took the embedded
//! pipeline on tmpfs from 546–591 to 685–701 jobs/s (README, Benchmarks).

use std::future::Future;

use anyhow::Context as _;
use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in mimalloc's `mi_option_e`: the bindings leave the options
/// unnamed, and their order is mimalloc's ABI (the test reads the default through it).
const PURGE_DELAY: mi_option_t = 15;
/// The purge delay set, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Gives pages freed in a thread's heap back to the system after 10 ms instead of
/// mimalloc's default second. An upload's chunks are allocated on one thread and freed on
/// another: with the default delay the API's peak RSS during a 1 GiB upload was 42–59 MiB
/// (once 62.5), with 10 ms 34.5–39 MiB, with 0 33–36 MiB. A shorter delay costs page faults
/// when the pages are wanted again: over the `stages` bench 27–31k with the default, 48–54k
/// with 10 ms, 75–81k with 0.
/// Call it first in `main`, before any other thread starts (mimalloc's options are not
/// synchronised).
pub fn configure() {
    // SAFETY: sets one integer option; no other thread is running yet.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

/// A binary's `main`: sets the allocator up, then runs `run` on a multi-threaded runtime
/// (what `#[tokio::main]` builds, which would start its threads first).
pub fn main<F>(run: impl FnOnce() -> F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    configure();
    tokio::runtime::Runtime::new()
        .context("starting the runtime")?
        .block_on(run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    /// The purge delay in milliseconds.
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads one integer option.
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn configure_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000, "mimalloc v3's default purge delay");
        }
        configure();
        assert_eq!(purge_delay(), 10);
    }
}
