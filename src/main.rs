//! Loads the configuration, sets up logging, and serves until SIGTERM or Ctrl-C.

use anyhow::Context;
use drawbridge::config::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    drawbridge::app::run(config, shutdown_signal())
        .await
        .context("drawbridge stopped with an error")
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
