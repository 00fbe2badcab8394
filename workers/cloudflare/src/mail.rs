//! [`Mailer`] over the runtime's TCP sockets (`connect()`): the core's SMTP dialogue
//! ([`edgevideo_core::smtp::deliver`]) to `SMTP_URL`, TLS from the first byte for `smtps://`.
//! Workers cannot open port 25; mail providers take `smtps://` on 465.

use std::time::Duration;

use edgevideo_core::error::MailError;
use edgevideo_core::ports::{MailStream, Mailer, OutgoingMail};
use edgevideo_core::smtp::{self, SmtpServer};
use futures_util::future::{select, Either};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use worker::{ConnectionBuilder, Delay, SecureTransport, Socket};

/// The whole dialogue's time limit: a mail server that stalls fails the send, not the
/// request forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The mail port: `server` is `SMTP_URL` parsed (`None`: no mail), `helo` our name.
pub struct SocketMailer {
    /// Where mail goes.
    pub server: Option<SmtpServer>,
    /// Our name in `EHLO` (the public host).
    pub helo: String,
}

/// A Workers socket as the SMTP dialogue reads and writes it.
struct WorkersStream(Socket);

fn broken(e: impl std::fmt::Display) -> MailError {
    MailError::Connection(e.to_string())
}

impl MailStream for WorkersStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, MailError> {
        self.0.read(buf).await.map_err(broken)
    }
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), MailError> {
        self.0.write_all(bytes).await.map_err(broken)?;
        self.0.flush().await.map_err(broken)
    }
}

impl Mailer for SocketMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let server = self.server.as_ref().ok_or(MailError::NotConfigured)?;
        let transport = if server.tls {
            SecureTransport::On
        } else {
            SecureTransport::Off
        };
        let socket = ConnectionBuilder::new()
            .secure_transport(transport)
            .connect(server.host.clone(), server.port)
            .map_err(broken)?;
        let mut stream = WorkersStream(socket);
        let dialogue = Box::pin(smtp::deliver(&mut stream, server, &self.helo, mail));
        let timeout = Box::pin(Delay::from(SEND_TIMEOUT));
        let result = match select(dialogue, timeout).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(MailError::Connection(format!(
                "no answer within {} s",
                SEND_TIMEOUT.as_secs()
            ))),
        };
        let _ = stream.0.close().await;
        result
    }
}
