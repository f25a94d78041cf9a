//! The admin server (Envoy's `/` endpoints), served from the main thread.
//!
//! One HTTP/1 server on `admin.address`; each endpoint answers with Envoy's
//! path, methods, query parameters, content type and output shape. Mutating
//! endpoints require POST, as Envoy's do; unknown paths get Envoy's 404 with
//! the command list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rvoy_model::address::Address;

use crate::server::{Server, ServerState};

const HELP: &str = include_str!("admin_help.txt");
const TEXT: &str = "text/plain; charset=UTF-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=UTF-8";

/// An admin response before the common headers are added.
pub struct AdminResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl AdminResponse {
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        AdminResponse {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }

    pub fn json(body: impl Into<String>) -> Self {
        AdminResponse {
            status: StatusCode::OK,
            content_type: JSON,
            body: body.into(),
        }
    }
}

/// Binds the admin listener and starts serving; returns the bound address.
pub async fn start(
    server: Arc<Server>,
    admin: &rvoy_model::bootstrap::Admin,
) -> std::io::Result<SocketAddr> {
    let addr = match &admin.address {
        Address::Ip { addr, .. } => *addr,
        Address::Pipe { .. } => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "admin on a pipe address is not supported by rvoy",
            ));
        }
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind admin address '{addr}': {e}"))
    })?;
    let listener = socket.listen(1024)?;
    let bound = listener.local_addr()?;
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = server.clone();
            tokio::task::spawn_local(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(server, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// Splits a query string into decoded (key, value) pairs, first occurrence wins.
pub fn query_params(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(server: Arc<Server>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let resp = dispatch(&server, &method, &path, &query, &body).await;
    let mut builder = Response::builder()
        .status(resp.status)
        .header("content-type", resp.content_type)
        .header("cache-control", "no-cache, max-age=0")
        .header("x-content-type-options", "nosniff")
        .header("server", "envoy");
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        builder = builder.header("date", v);
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Whether `path` requires POST, per Envoy's admin table.
fn post_only(path: &str) -> bool {
    HELP.lines()
        .filter_map(|l| l.trim_start().strip_prefix('/'))
        .any(|l| {
            let name = l.split([':', ' ']).next().unwrap_or("");
            format!("/{name}") == path && l.contains("(POST)")
        })
}

fn known(path: &str) -> bool {
    HELP.lines().filter_map(|l| l.strip_prefix("  /")).any(|l| {
        let name = l.split([':', ' ']).next().unwrap_or("");
        format!("/{name}") == path
    })
}

async fn dispatch(
    server: &Arc<Server>,
    method: &Method,
    path: &str,
    query: &str,
    _body: &[u8],
) -> AdminResponse {
    if !known(path) {
        return AdminResponse::text(StatusCode::NOT_FOUND, format!("invalid path. {HELP}"));
    }
    if post_only(path) && method != Method::POST {
        return AdminResponse::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} not allowed, POST required."),
        );
    }
    let params = query_params(query);
    match path {
        "/" => AdminResponse {
            status: StatusCode::OK,
            content_type: HTML,
            body: crate::admin_pages::home(),
        },
        "/help" => AdminResponse::text(StatusCode::OK, HELP),
        "/ready" => {
            let state = effective_state(server);
            let status = if state == ServerState::Live {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            AdminResponse::text(status, format!("{}\n", state.as_str()))
        }
        "/server_info" => AdminResponse::json(crate::admin_pages::server_info(
            server,
            effective_state(server),
        )),
        "/stats" => crate::admin_pages::stats(server, query),
        "/stats/prometheus" => crate::admin_pages::prometheus(server, query),
        "/logging" => crate::admin_pages::logging(method, query),
        "/healthcheck/fail" => {
            server.health_failed.store(true, Ordering::Relaxed);
            AdminResponse::text(StatusCode::OK, "OK\n")
        }
        "/healthcheck/ok" => {
            server.health_failed.store(false, Ordering::Relaxed);
            AdminResponse::text(StatusCode::OK, "OK\n")
        }
        "/quitquitquit" => {
            server.request_shutdown();
            AdminResponse::text(StatusCode::OK, "OK\n")
        }
        "/reset_counters" => {
            server.store.reset_counters();
            AdminResponse::text(StatusCode::OK, "OK\n")
        }
        "/hot_restart_version" => AdminResponse::text(StatusCode::OK, "disabled"),
        "/reopen_logs" => {
            server.logs.reopen_all();
            AdminResponse::text(StatusCode::OK, "OK\n")
        }
        "/clusters" => crate::admin_pages::clusters(server, &params),
        "/listeners" => crate::admin_pages::listeners(server, &params),
        "/config_dump" => crate::admin_pages::config_dump(server, &params),
        "/memory" => AdminResponse::json(crate::admin_pages::memory()),
        "/runtime" => AdminResponse::json(crate::admin_pages::runtime(server)),
        "/certs" => AdminResponse::json("{\n \"certificates\": []\n}\n"),
        "/drain_listeners" => crate::admin_pages::drain_listeners(server, &params),
        other => AdminResponse::text(
            StatusCode::NOT_IMPLEMENTED,
            format!("{other} is not supported by rvoy\n"),
        ),
    }
}

/// `/ready` and `/server_info` report DRAINING while health checks fail.
pub fn effective_state(server: &Server) -> ServerState {
    if server.health_failed.load(Ordering::Relaxed) || server.draining.load(Ordering::Relaxed) {
        return match server.state() {
            ServerState::Live => ServerState::Draining,
            other => other,
        };
    }
    server.state()
}
