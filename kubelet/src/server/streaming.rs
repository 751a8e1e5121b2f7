//! exec, attach and port-forward: the kubelet asks the runtime (CRI Exec/Attach/PortForward)
//! for a streaming URL and proxies the caller's upgraded connection (SPDY or WebSocket,
//! whichever it asked for) to it byte for byte, as upstream's kubelet proxies to the
//! runtime's streaming server.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

/// Decodes an `application/x-www-form-urlencoded` query into pairs, keeping repeats
/// (`command=ls&command=-l`).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The stream options of an exec or attach request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// `command` (exec).
    pub command: Vec<String>,
    /// `stdin`.
    pub stdin: bool,
    /// `stdout`.
    pub stdout: bool,
    /// `stderr`.
    pub stderr: bool,
    /// `tty`.
    pub tty: bool,
}

impl StreamOptions {
    /// Reads the options from the query as upstream's remotecommand does (`1`/`true`).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<StreamOptions, String> {
        let flag = |k: &str| {
            pairs
                .iter()
                .any(|(n, v)| n == k && (v == "1" || v == "true"))
        };
        let o = StreamOptions {
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            stdin: flag("input") || flag("stdin"),
            stdout: flag("output") || flag("stdout"),
            stderr: flag("error") || flag("stderr"),
            tty: flag("tty"),
        };
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if o.tty && o.stderr {
            // As upstream: a tty merges stderr into stdout.
            return Ok(StreamOptions { stderr: false, ..o });
        }
        Ok(o)
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

/// Splits `http://host:port/path?q` into (`host:port`, `/path?q`).
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then(|| (host.to_string(), path.to_string()))
}

/// Proxies `req` (an upgrade request) to the runtime's streaming `url`: the runtime's
/// answer is returned to the caller and, on `101 Switching Protocols`, both upgraded
/// connections are spliced together until either side closes.
pub async fn proxy_upgrade(mut req: Request, url: &str) -> Response {
    let Some((host, path)) = split_url(url) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unsupported streaming URL from the runtime: {url:?}"),
        );
    };
    let stream = match tokio::net::TcpStream::connect(&host).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("error dialing the runtime's streaming server {host}: {e}"),
            )
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("streaming handshake: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "Streaming connection to the runtime ended");
        }
    });
    let mut backend = hyper::Request::builder()
        .method(req.method().clone())
        .uri(path);
    for (k, v) in req.headers() {
        if k != header::HOST && k != header::AUTHORIZATION && k != header::CONTENT_LENGTH {
            backend = backend.header(k, v);
        }
    }
    let Ok(backend) = backend.header(header::HOST, &host).body(Body::empty()) else {
        return error(StatusCode::BAD_REQUEST, "invalid request headers");
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(backend).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("streaming request: {e}")),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, Body::new(body));
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "Upgrading the streaming connection failed");
                return;
            }
        };
        let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!(error = %e, "Streaming connection closed");
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeats_and_decodes() {
        let p = query_pairs("command=sh&command=-c&command=echo+hi%21&output=1&tty=");
        let o = StreamOptions::from_pairs(&p).unwrap();
        assert_eq!(o.command, vec!["sh", "-c", "echo hi!"]);
        assert!(o.stdout && !o.stdin && !o.tty);
        let p = query_pairs("command=x&stdin=true&stdout=true&stderr=true&tty=true");
        let o = StreamOptions::from_pairs(&p).unwrap();
        assert!(o.tty && o.stdin && !o.stderr, "tty merges stderr");
        assert!(StreamOptions::from_pairs(&query_pairs("command=x")).is_err());
        assert_eq!(
            query_pairs("a=%zz&b=%4"),
            vec![("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
    }

    #[test]
    fn streaming_urls_split_into_host_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:42/exec/tok"),
            Some(("127.0.0.1:42".into(), "/exec/tok".into()))
        );
        assert_eq!(split_url("https://x/exec"), None);
        assert_eq!(split_url("/exec/tok"), None);
    }
}
