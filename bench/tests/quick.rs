//! Every benchmark that needs no HTTP server, run at tiny sizes: the harness works end to
//! end (jobs published, archives and pictures accepted, the table printed). No timing is
//! asserted: the figures only have to be measured.

use k8or_bench::support::FolderCleanup;
use k8or_bench::{report, Scale};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmarks_run_at_tiny_sizes() {
    // The runs' data folders, in TMPDIR and /dev/shm, go when the test ends, passed or not.
    let _cleanup = FolderCleanup;
    let mut rows = Vec::new();
    for name in ["queue", "throughput", "latency", "validate"] {
        let got = k8or_bench::run(name, Scale::TINY)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(!got.is_empty(), "{name} measured nothing");
        for row in &got {
            assert!(row.figure.is_finite() && row.figure > 0.0, "{row:?}");
        }
        rows.extend(got);
    }
    let table = report::table(&rows);
    assert_eq!(table.lines().count(), rows.len() + 2, "{table}");
}

#[tokio::test]
async fn an_unknown_benchmark_is_refused() {
    let err = k8or_bench::run("nope", Scale::TINY).await.unwrap_err();
    assert!(err.to_string().contains("queue"), "{err}");
}
