//! A measuring stick, not a gateway: an HTTP/1.1 server on the same stack
//! as `vigil serve` (hyper on tokio, the same number of worker threads,
//! `TCP_NODELAY`) that reads each request's body and answers 200 at once,
//! checking nothing and storing nothing.
//!
//! Driven by `load_gateway` in the same rounds as `vigil serve`
//! (`FLOOR=1 scripts/gateway-ab.sh …`), it gives what this machine and the
//! client allow an HTTP server that does no work at all, so the gateway's
//! figures can be read as a share of that ceiling, a ratio that holds
//! however busy the shared machine is at the time.
//!
//! `/ingest/batch` is answered `{"accepted":N,"rejected":0,"results":[]}`
//! with N the body's non-blank lines (what the client counts); any other
//! path gets a body the size of the gateway's answer to an accepted event.
//!
//! ```sh
//! cargo run --release --example http_floor -- --listen 127.0.0.1:8000 &
//! cargo run --release --example load_gateway -- --secret any --concurrency 16
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// About the size of `vigil serve`'s answer to an accepted quiet event.
const ANSWER: &str = r#"{"accepted":true,"event_id":"load-0000000000000-0000-000000000000","gateway_reason":"ok","correlation":{"decision":"pass","reasons":[],"context":{}},"policy":{"decision":"allow","reasons":[],"context":{}},"final_decision":"allow"}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let batch = req.uri().path() == "/ingest/batch";
    // A body that fails part-way is answered like an empty one: the client
    // counts no events for it.
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let text = if batch {
        let lines = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        format!(r#"{{"accepted":{lines},"rejected":0,"results":[]}}"#)
    } else {
        ANSWER.to_string()
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:8000".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument {other:?} (only --listen ADDR)").into()),
        }
    }
    let addr: SocketAddr = listen.parse()?;
    tokio::runtime::Builder::new_multi_thread()
        // One worker per core and one more, what measured best for this
        // server alone (and what the README's floor figures used).
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()) + 1)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            hyper::service::service_fn(answer),
                        )
                        .await;
                });
            }
        })
}
