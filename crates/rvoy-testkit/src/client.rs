//! A hyper 1.x client, HTTP/1.1 or h2c (HTTP/2 with prior knowledge), over one TCP
//! connection, with every request bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::DEFAULT_TIMEOUT;
use crate::echo::RecordedRequest;
use crate::error::{Error, IoContext, Result};

/// A response, body collected.
#[derive(Debug, Clone)]
pub struct HyperResponse {
    /// The status code.
    pub status: u16,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Trailers, if any.
    pub trailers: Option<HeaderMap>,
}

impl HyperResponse {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The upstream request described by an echo answer.
    pub fn echo(&self) -> Option<RecordedRequest> {
        RecordedRequest::from_body(&self.body)
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One client connection.
pub struct HyperClient {
    sender: Sender,
    addr: SocketAddr,
    timeout: Duration,
}

impl std::fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperClient")
            .field("addr", &self.addr)
            .field("h2", &matches!(self.sender, Sender::H2(_)))
            .finish()
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TokioIo<TcpStream>> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::timeout(format!("connecting to {addr}"), timeout))?
        .ctx(&format!("connecting to {addr}"))?;
    stream.set_nodelay(true).ctx("nodelay")?;
    Ok(TokioIo::new(stream))
}

impl HyperClient {
    /// An HTTP/1.1 connection to `addr`.
    pub async fn http1(addr: SocketAddr) -> Result<HyperClient> {
        let io = connect(addr, DEFAULT_TIMEOUT).await?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| Error::Hyper(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HyperClient {
            sender: Sender::H1(sender),
            addr,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// An h2c (prior knowledge) connection to `addr`.
    pub async fn h2c(addr: SocketAddr) -> Result<HyperClient> {
        let io = connect(addr, DEFAULT_TIMEOUT).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| Error::Hyper(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HyperClient {
            sender: Sender::H2(sender),
            addr,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes the per-request bound (10 s by default).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// `GET path` with this host (`:authority` on h2).
    pub async fn get(&mut self, path: &str, host: &str) -> Result<HyperResponse> {
        let req = self
            .builder("GET", path, host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Usage(e.to_string()))?;
        self.send(req).await
    }

    /// A request builder with the method, target and host set the right way for the
    /// protocol (HTTP/1: origin form + `host`; h2: absolute URI for `:scheme`/`:authority`).
    pub fn builder(&self, method: &str, path: &str, host: &str) -> http::request::Builder {
        match self.sender {
            Sender::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header("host", host),
            Sender::H2(_) => Request::builder()
                .method(method)
                .version(Version::HTTP_2)
                .uri(format!("http://{host}{path}")),
        }
    }

    /// Sends a request and collects the response (bounded).
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<HyperResponse> {
        let timeout = self.timeout;
        let fut = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| Error::Hyper(e.to_string()))?;
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| Error::Hyper(e.to_string()))?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| Error::Hyper(format!("{e:?}")))?;
            let (parts, body) = resp.into_parts();
            let collected = body
                .collect()
                .await
                .map_err(|e| Error::Hyper(e.to_string()))?;
            let trailers = collected.trailers().cloned();
            Ok(HyperResponse {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body: collected.to_bytes(),
                trailers,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::timeout(format!("response from {}", self.addr), timeout))?
    }
}
