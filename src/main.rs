//! Loads the configuration, sets up logging, and serves until SIGTERM or Ctrl-C.

use anyhow::Context;
use drawbridge::config::Config;
use tracing_subscriber::EnvFilter;

// Frames are allocated on the pub/sub task and freed on whichever worker runs the session;
// glibc malloc spent a quarter of the gateway's CPU on that under fan-out (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = match Config::load().and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("drawbridge: invalid configuration:");
            for e in errors {
                eprintln!("  - {e}");
            }
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log).context("log filter")?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    for name in Config::unknown_env() {
        tracing::warn!(%name, "ignoring an environment variable that names no setting");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        drawbridge::app::run(config, shutdown)
            .await
            .context("drawbridge stopped with an error")
    })
}

/// Resolves on SIGTERM (what Kubernetes sends before killing a pod) or Ctrl-C. The handlers
/// are installed here, before serving starts: a signal that arrived before the future was
/// first polled would otherwise kill the process without a drain.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
