//! Where the load goes: a drawbridge instance given as `ws://host:port[/path]`,
//! `http://host:port` or bare `host:port`, resolved once so connections do not each pay a lookup.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};

/// One instance under test.
#[derive(Clone, Debug)]
pub struct Target {
    /// What the user wrote, for reports.
    pub url: String,
    /// `host:port` as written, for the `Host` header and the WebSocket request URL.
    pub authority: String,
    /// The WebSocket path; `/ws` unless the URL named one.
    pub ws_path: String,
    /// Resolved address every connection dials.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves `url`. Unless `allow_remote`, refuses an address outside loopback:
    /// a load generator pointed at the wrong host by a typo is a denial of service.
    pub async fn resolve(url: &str, allow_remote: bool) -> Result<Self> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("ws".to_owned(), url),
        };
        match scheme.as_str() {
            "ws" | "http" => {}
            "wss" | "https" => {
                bail!("{url}: TLS is not supported (point the tool at the instance itself)")
            }
            other => bail!("{url}: unknown scheme {other:?}; use ws:// or http://"),
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("{url}: no host");
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let ws_path = if scheme == "ws" && !path.is_empty() && path != "/" {
            path.to_owned()
        } else {
            "/ws".to_owned()
        };
        let addr = tokio::net::lookup_host(authority.as_str())
            .await
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{url}: {authority} resolves to nothing"))?;
        if !allow_remote && !addr.ip().is_loopback() {
            bail!("{url}: {addr} is not a loopback address; pass --allow-remote to load it anyway");
        }
        Ok(Self {
            url: url.to_owned(),
            authority,
            ws_path,
            addr,
        })
    }

    /// The WebSocket URL carrying `token` in the query string (`PROTOCOL.md` §1).
    pub fn ws_url(&self, token: &str) -> String {
        let sep = if self.ws_path.contains('?') { '&' } else { '?' };
        format!("ws://{}{}{sep}token={token}", self.authority, self.ws_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_the_usual_spellings() {
        let t = Target::resolve("127.0.0.1:9000", false)
            .await
            .expect("bare");
        assert_eq!(t.ws_url("T"), "ws://127.0.0.1:9000/ws?token=T");
        let t = Target::resolve("http://127.0.0.1:9000/", false)
            .await
            .expect("http");
        assert_eq!(t.ws_path, "/ws");
        let t = Target::resolve("ws://127.0.0.1:9000/", false)
            .await
            .expect("root");
        assert_eq!(t.ws_path, "/ws");
        let t = Target::resolve("ws://127.0.0.1:9000/custom", false)
            .await
            .expect("path");
        assert_eq!(t.ws_url("T"), "ws://127.0.0.1:9000/custom?token=T");
    }

    #[tokio::test]
    async fn refuses_remote_and_tls() {
        let refusal = |r: Result<Target>| r.map(|t| t.url).expect_err("refused").to_string();
        let remote = Target::resolve("ws://192.0.2.1:80", false).await;
        assert!(refusal(remote).contains("--allow-remote"));
        let allowed = Target::resolve("ws://192.0.2.1:80", true)
            .await
            .expect("allowed");
        assert_eq!(allowed.addr.to_string(), "192.0.2.1:80");
        let tls = Target::resolve("wss://127.0.0.1:443", false).await;
        assert!(refusal(tls).contains("TLS"));
        let other = Target::resolve("ftp://127.0.0.1:21", false).await;
        assert!(refusal(other).contains("unknown scheme"));
    }
}
