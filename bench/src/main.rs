//! `k8or-bench [--quick] all|queue|throughput|stages|latency|ingest|validate…`: runs the chosen
//! benchmarks and prints the results table (Markdown, like the README's).

use clap::Parser;
use k8or_bench::{report, Scale, NAMES};

/// The production binaries' allocator (`k8or_workers::allocator`), so the stages run here
/// as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "k8or-bench", about = "k8or benchmarks on the embedded backend")]
struct Cli {
    /// Small sizes: the whole run takes well under a minute.
    #[arg(long)]
    quick: bool,
    /// `all`, or any of: queue, throughput, stages, latency, ingest, validate.
    #[arg(default_value = "all")]
    benchmarks: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    k8or_workers::allocator::main(run)
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The data folders go however the run ends.
    let _cleanup = k8or_bench::support::FolderCleanup;
    let scale = if cli.quick { Scale::QUICK } else { Scale::FULL };
    let names: Vec<String> = if cli.benchmarks.iter().any(|b| b == "all") {
        NAMES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        cli.benchmarks
    };
    let mut rows = Vec::new();
    for name in &names {
        eprintln!("running {name}…");
        let got = k8or_bench::run(name, scale).await?;
        eprint!("{}", report::table(&got));
        rows.extend(got);
    }
    println!("{}", report::table(&rows));
    Ok(())
}
