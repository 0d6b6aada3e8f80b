//! `k8or-api serve` (the default): the intake API; on the embedded backend also every stage
//! worker, in-process, so one command runs the whole pipeline.
//! `k8or-api token --user U --role user|admin [--ttl 24h]`: prints a signed token.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use k8or::config::BackendKind;
use k8or::Settings;
use k8or_api::auth::parse_ttl;
use k8or_api::{secret, Application, Role, TokenKeys};
use tokio_util::sync::CancellationToken;

/// mimalloc, set up by [`k8or_workers::allocator::configure`] (why: there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "k8or-api",
    version,
    about = "The k8or upload pipeline's intake API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (and, on the embedded backend, every stage worker). The default.
    Serve,
    /// Print a token signed with the configured secret.
    Token {
        /// The username (`wp_users.user_login`).
        #[arg(long)]
        user: String,
        #[arg(long, value_enum)]
        role: Role,
        /// How long it is valid: 24h, 30m, 7d, 90s…
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Exit 0 if `GET /healthz` answers 200 at the address (the container health check).
    Healthcheck {
        /// host:port; an unspecified host (0.0.0.0) means this machine.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

/// How long the ready-made tokens printed at an embedded start are valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

fn main() -> anyhow::Result<()> {
    k8or_workers::allocator::main(run)
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading the settings")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Healthcheck { addr } => healthcheck(&addr).await,
        Command::Token { user, role, ttl } => {
            let secret = secret::resolve(&settings).context("finding the token secret")?;
            let token = TokenKeys::new(secret.bytes())
                .issue(&user, role, ttl)
                .context("signing the token")?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    k8or_workers::telemetry::init_tracing(settings.log_format);
    let embedded = settings.backend == BackendKind::Embedded;
    let app = Application::build(settings)
        .await
        .context("starting the intake API")?;
    if embedded {
        print_dev_tokens(&app)?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    // The embedded backend runs the whole pipeline in this process: every stage's loop,
    // stopped by the same signal as the server.
    let workers = embedded.then(|| {
        tokio::spawn(k8or_workers::run(
            app.context().clone(),
            &k8or::Stage::ALL,
            shutdown.clone().cancelled_owned(),
        ))
    });
    let served = app
        .run_until_stopped(shutdown.clone().cancelled_owned())
        .await;
    // However the server stopped, the workers stop too, finishing what they hold.
    shutdown.cancel();
    if let Some(workers) = workers {
        workers
            .await
            .context("the embedded workers panicked")?
            .context("the embedded workers failed")?;
    }
    served.context("serving")
}

/// One plain HTTP/1.1 request, so the image needs no curl.
async fn healthcheck(addr: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.replacen("0.0.0.0:", "127.0.0.1:", 1);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .with_context(|| format!("no answer from {addr} within 5 s"))?
        .with_context(|| format!("asking {addr} for /healthz"))?;
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{addr} answered {:?}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

/// A laptop start is ready to use: one token per role, for the seed's users.
fn print_dev_tokens(app: &Application) -> anyhow::Result<()> {
    if app.secret_generated() {
        println!(
            "first start: made a token secret in the data folder ({}, mode 0600)",
            k8or_api::secret::SECRET_FILE
        );
    }
    let keys = app.token_keys();
    let user = keys.issue("jamesbond", Role::User, DEV_TOKEN_TTL)?;
    let admin = keys.issue("k8or_admin", Role::Admin, DEV_TOKEN_TTL)?;
    println!(
        "k8or intake API on http://{addr} (embedded backend)\n\
         dev tokens, valid 24h (`k8or-api token --user U --role user|admin` makes more):\n  \
         user  jamesbond:  {user}\n  admin k8or_admin: {admin}",
        addr = app.local_addr()
    );
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    k8or_workers::signals::shutdown_signal().await;
    tracing::info!("shutting down: finishing requests and jobs in flight");
    shutdown.cancel();
}
