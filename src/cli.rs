//! The command line: `serve` (the default), `check-config`, `healthcheck`, and `backup` /
//! `restore` of every room (see [`crate::backup`]).
//!
//! Exit codes: 0 success, 1 a failed health check or a server that stopped with an error,
//! 2 an invalid configuration (or a configuration file that is not there).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// The exit code of an invalid configuration.
pub const INVALID_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "drawbridge",
    version,
    about = "A horizontally scaled, stateless WebSocket gateway for collaborative whiteboards",
    after_help = "Every setting can also be set by an environment variable DRAWBRIDGE_<KEY>, \
                  which overrides the file (see config/default.toml)."
)]
pub struct Cli {
    /// TOML configuration file. It must exist; without it, config/default.toml is read when
    /// present.
    #[arg(
        long,
        short,
        global = true,
        env = "DRAWBRIDGE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Print the effective configuration (file, then environment) with secrets masked, and
    /// exit 2 if it is invalid.
    CheckConfig,
    /// GET a URL and exit 0 if it answers 2xx, 1 otherwise: for container health checks.
    Healthcheck {
        /// Plain http:// URL; by default /healthz on the configured `listen` address (the
        /// loopback address when it listens on all of them).
        url: Option<String>,
        /// Seconds to wait for the connection and for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Write every room changed since the last run to DIR (one export.json per room, with its
    /// versions), from the configured Redis.
    Backup {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Load every room of a backup directory into the configured Redis, replacing rooms of the
    /// same id.
    Restore {
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
}

/// `check-config`: the configuration as TOML on stdout, or every error on stderr.
pub fn check_config(file: Option<&Path>) -> ExitCode {
    let config = match Config::load_from(file).and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("drawbridge: invalid configuration:");
            for e in errors {
                eprintln!("  - {e}");
            }
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    for name in Config::unknown_env() {
        eprintln!("drawbridge: warning: {name} names no setting and is ignored");
    }
    match toml::to_string(&config.masked()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("drawbridge: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `healthcheck`: 0 when `url` (or the configured `/healthz`) answers 2xx.
pub fn healthcheck(file: Option<&Path>, url: Option<String>, timeout: Duration) -> ExitCode {
    let url = match url {
        Some(url) => url,
        // Only `listen` matters here: the rest of the configuration is the server's business.
        None => match Config::load_from(file).map(|c| default_health_url(&c.listen)) {
            Ok(Some(url)) => url,
            Ok(None) => {
                eprintln!("drawbridge: listen is not host:port; give the URL to check");
                return ExitCode::FAILURE;
            }
            Err(errors) => {
                eprintln!(
                    "drawbridge: cannot read the configuration: {}",
                    errors.join("; ")
                );
                return ExitCode::FAILURE;
            }
        },
    };
    match get_status(&url, timeout) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("drawbridge: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("drawbridge: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `http://<listen>/healthz`, with an unspecified address (`0.0.0.0`, `::`) replaced by the
/// loopback address of its family.
fn default_health_url(listen: &str) -> Option<String> {
    let mut addr: SocketAddr = listen.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(format!("http://{addr}/healthz"))
}

/// The status of a plain HTTP/1.1 `GET`; blocking, which is all a one-shot command needs.
fn get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut last = format!("{authority} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return request(stream, authority, path, timeout),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

fn request(
    mut stream: TcpStream,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let io = |e: std::io::Error| e.to_string();
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: drawbridge-healthcheck\r\n\
         Connection: close\r\n\r\n"
    )
    .map_err(io)?;
    // The status line is all that is needed.
    let mut head = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    while head.len() < 64 && !head.contains(&b'\n') {
        match stream.read(&mut chunk).map_err(io)? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.")
        .and_then(|l| l.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_reaches_an_unspecified_address_over_loopback() {
        assert_eq!(
            default_health_url("0.0.0.0:8080").as_deref(),
            Some("http://127.0.0.1:8080/healthz")
        );
        assert_eq!(
            default_health_url("[::]:8080").as_deref(),
            Some("http://[::1]:8080/healthz")
        );
        assert_eq!(
            default_health_url("10.0.0.5:80").as_deref(),
            Some("http://10.0.0.5:80/healthz")
        );
        assert_eq!(default_health_url("nowhere"), None);
    }

    #[test]
    fn only_plain_http_is_checked() {
        let err = get_status("https://example.invalid/", Duration::from_millis(10));
        assert!(err.is_err_and(|e| e.contains("http://")));
    }
}
