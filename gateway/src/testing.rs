//! Test support: a fake edge on a local listener that records every request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::push::Edge;

/// One request the fake edge got.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The method.
    pub method: String,
    /// The last path segment, with the query if any.
    pub file: String,
    /// The content-type header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// An edge that takes every request (204, or the status set with [`FakeEdge::answer`] for
/// the files that contain a given text) and records it.
#[derive(Clone, Default)]
pub(crate) struct FakeEdge {
    requests: Arc<Mutex<Vec<Request>>>,
    answers: Arc<Mutex<Vec<(String, u16)>>>,
}

impl FakeEdge {
    /// The fake edge listening, and a client for it (one attempt per file).
    pub async fn start() -> (Self, Edge) {
        Self::start_with(1).await
    }

    /// The fake edge listening, and a client for it making `attempts` per file.
    pub async fn start_with(attempts: u32) -> (Self, Edge) {
        let edge = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let requests = edge.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(requests.clone().serve(socket));
            }
        });
        (edge, Edge::new(&origin, attempts, Duration::ZERO).unwrap())
    }

    /// Answers `status` to requests whose file contains `text` from now on.
    pub fn answer(&self, text: &str, status: u16) {
        self.answers.lock().unwrap().push((text.to_owned(), status));
    }

    async fn serve(self, socket: tokio::net::TcpStream) {
        let mut socket = BufReader::new(socket);
        loop {
            let mut head = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let header = |wanted: &str| {
                head.iter().find_map(|h| {
                    let (name, value) = h.split_once(':')?;
                    name.eq_ignore_ascii_case(wanted)
                        .then(|| value.trim().to_owned())
                })
            };
            let length = header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let content_type = header("content-type");
            let mut body = vec![0; length];
            socket.read_exact(&mut body).await.unwrap();
            let mut words = head[0].split(' ');
            let method = words.next().unwrap().to_owned();
            let file = words.next().unwrap().rsplit('/').next().unwrap().to_owned();
            let status = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .find(|(text, _)| file.contains(text.as_str()))
                .map_or(204, |(_, status)| *status);
            self.requests.lock().unwrap().push(Request {
                method,
                file,
                content_type,
                body,
            });
            let answer = format!("HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\n\r\n");
            socket.get_mut().write_all(answer.as_bytes()).await.unwrap();
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The PUTs so far: (file, body).
    pub fn puts(&self) -> Vec<(String, Vec<u8>)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .map(|r| (r.file, r.body))
            .collect()
    }

    /// Waits (at most 10 s) until `done` holds for the PUTs.
    pub async fn until(&self, done: impl Fn(&[(String, Vec<u8>)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.puts()) {
            assert!(Instant::now() < deadline, "the edge got {:?}", self.files());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The files PUT so far.
    pub fn files(&self) -> Vec<String> {
        self.puts().into_iter().map(|(file, _)| file).collect()
    }
}
