//! The few HTTP calls the tool makes (guest tokens, room creation), as plain HTTP/1.1
//! over a `TcpStream`: the targets are local and unencrypted, and a full client would cost more
//! build time than all the rest of the tool.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Longest a single call may take; the server is local, so anything slower is a failure.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses we read are small JSON documents; refuse anything absurd.
const MAX_RESPONSE: usize = 1 << 20;

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as `T`, provided the status is 2xx.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if !(200..300).contains(&self.status) {
            bail!(
                "answered {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        serde_json::from_slice(&self.body).context("unexpected body")
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub async fn call(
    target: &Target,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json_body: Option<&str>,
) -> Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connect to {}", target.addr))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            target.authority
        );
        if let Some(token) = bearer {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = json_body.unwrap_or("");
        if json_body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        req.push_str(body);
        stream.write_all(req.as_bytes()).await?;

        let mut raw = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > MAX_RESPONSE {
                bail!("response to {method} {path} is larger than {MAX_RESPONSE} bytes");
            }
        }
        parse_response(&raw).with_context(|| format!("bad response to {method} {path}"))
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{method} {path} on {} timed out", target.url))?
}

/// Parses a complete HTTP/1.1 response (read until the server closed), including a chunked body.
fn parse_response(raw: &[u8]) -> Result<Response> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("empty response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = length {
        rest.get(..len)
            .context("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).context("truncated chunk")?);
        rest = rest.get(size + 2..).context("truncated chunk end")?;
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomCreated {
    data: RoomData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomData {
    room_id: String,
}

/// `POST /api/v1/rooms` → the new room's id.
pub async fn create_room(target: &Target, token: &str) -> Result<String> {
    let created: RoomCreated = call(target, "POST", "/api/v1/rooms", Some(token), None)
        .await?
        .json()
        .with_context(|| format!("POST /api/v1/rooms on {}", target.url))?;
    Ok(created.data.room_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r =
            parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").expect("plain");
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }

    #[derive(Debug, Deserialize)]
    struct Named {
        name: String,
    }

    #[test]
    fn json_bodies_are_read_only_from_a_success() {
        let ok = Response {
            status: 201,
            body: br#"{"name":"lt-1"}"#.to_vec(),
        };
        assert_eq!(ok.json::<Named>().expect("2xx").name, "lt-1");
        let refused = Response {
            status: 429,
            body: br#"{"name":"lt-1"}"#.to_vec(),
        };
        let e = refused.json::<Named>().expect_err("429");
        assert!(e.to_string().contains("429"), "{e}");
        let garbled = Response {
            status: 200,
            body: b"<html>".to_vec(),
        };
        assert!(garbled.json::<Named>().is_err());
    }
}
