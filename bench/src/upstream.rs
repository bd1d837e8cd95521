//! The hot path's upstream: a tiny HTTP/1.1 keep-alive server answering
//! `200 ok` to every request, run as its own process (`paastis-bench
//! upstream`) so that its CPU time is not the bench's and it can be pinned
//! away from the measured Envoy.
//!
//! It must cost as little as possible per request, so that the Envoys in
//! front of it are what limits throughput: one thread, no routing, no header
//! parsing beyond finding where a request ends.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::{pinned, Guard};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n";
const NOT_IMPLEMENTED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Serves forever on 127.0.0.1 (a kernel-chosen port, printed as
/// `listening on ADDR` on stdout). The entry point of `paastis-bench upstream`.
pub fn serve() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}").map_err(|e| e.to_string())?;
        stdout.flush().map_err(|e| e.to_string())?;
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream));
        }
    })
}

async fn connection(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Every complete request in the buffer gets its answer, in order.
        while let Some(head_end) = find(&buf, b"\r\n\r\n").map(|i| i + 4) {
            let head = &buf[..head_end];
            if contains_ignore_case(head, b"\ntransfer-encoding:") {
                // GET benchmarks never send a chunked body.
                let _ = stream.write_all(NOT_IMPLEMENTED).await;
                return;
            }
            let body = content_length(head).unwrap_or(0);
            if buf.len() < head_end + body {
                break;
            }
            buf.drain(..head_end + body);
            out.extend_from_slice(RESPONSE);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// A running upstream process.
pub struct Upstream {
    process: Guard,
    pub addr: SocketAddr,
}

impl Upstream {
    /// Starts `paastis-bench upstream` (this very binary) on `cpus`.
    pub fn start(cpus: Option<&str>) -> Result<Self, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = pinned(Path::new(&me), cpus)
            .arg("upstream")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the upstream: {e}"))?;
        let mut process = Guard::new(child);
        let stdout = process
            .child_mut()
            .and_then(|c| c.stdout.take())
            .ok_or("no upstream stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the upstream did not start: {line:?}"))?;
        Ok(Self { process, addr })
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_length_of_a_body() {
        assert_eq!(
            content_length(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Some(12)
        );
        assert_eq!(content_length(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"), None);
        assert!(contains_ignore_case(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\ntransfer-encoding:"
        ));
    }
}
