//! The command line (see [`drawbridge::cli`]): loads the configuration, sets up logging, and
//! serves until SIGTERM or Ctrl-C; or checks the configuration, or a health endpoint.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use drawbridge::cli::{Cli, Command, INVALID_CONFIG};
use drawbridge::config::Config;
use drawbridge::logging::{self, Format};
use tracing_subscriber::EnvFilter;

// Frames are allocated on the pub/sub task and freed on whichever worker runs the session;
// glibc malloc spent a quarter of the gateway's CPU on that under fan-out (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(file),
        Command::CheckConfig => drawbridge::cli::check_config(file),
        Command::Healthcheck { url, timeout } => {
            drawbridge::cli::healthcheck(file, url, Duration::from_secs(timeout))
        }
        Command::Backup { out } => backup_command(file, Job::Backup(out)),
        Command::Restore { from } => backup_command(file, Job::Restore(from)),
    }
}

enum Job {
    Backup(std::path::PathBuf),
    Restore(std::path::PathBuf),
}

/// `backup` / `restore`: one pass over the configured Redis, a summary line on stdout.
fn backup_command(file: Option<&Path>, job: Job) -> ExitCode {
    // Not the server's whole validation: a backup job needs Redis, not the token secret.
    let config = match Config::load_from(file) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("drawbridge: invalid configuration: {}", errors.join("; "));
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    logging::init(Format::parse(&config.log_format), filter, "backup");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("drawbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let tasks = tokio_util::task::TaskTracker::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let engine = drawbridge::backup::engine(&config, &tasks, stop.clone()).await?;
        let done = match &job {
            Job::Backup(dir) => drawbridge::backup::backup(&engine, &engine, dir)
                .await
                .map(|r| {
                    format!(
                        "backup: {} rooms, {} written, {} unchanged",
                        r.rooms, r.written, r.unchanged
                    )
                }),
            Job::Restore(dir) => drawbridge::backup::restore(&engine, &engine, dir)
                .await
                .map(|n| format!("restore: {n} rooms")),
        };
        stop.cancel();
        tasks.close();
        tasks.wait().await;
        done
    });
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("drawbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(file: Option<&Path>) -> ExitCode {
    let loaded = Config::load_from(file);
    // Start-up errors are written in the configured format, so a log collector parses them
    // too; when the file itself is unreadable, the environment may still say JSON.
    let (format, configured_id) = match &loaded {
        Ok(config) => (
            Format::parse(&config.log_format),
            config.instance_id.clone(),
        ),
        Err(_) => (
            Format::parse(&std::env::var("DRAWBRIDGE_LOG_FORMAT").unwrap_or_default()),
            std::env::var("DRAWBRIDGE_INSTANCE_ID").unwrap_or_default(),
        ),
    };
    let instance = drawbridge::app::unique_instance_id(&configured_id);
    let config = match loaded.and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(errors) => {
            logging::startup_error(format, &instance, "invalid configuration", &errors);
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    // Validated above; the fallback only keeps this free of a panic path.
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    logging::init(format, filter, &instance);
    for name in Config::unknown_env() {
        tracing::warn!(%name, "ignoring an environment variable that names no setting");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(|e| format!("installing signal handlers: {e}"))?;
        drawbridge::app::run(config, instance, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "drawbridge stopped with an error");
            ExitCode::FAILURE
        }
    }
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
