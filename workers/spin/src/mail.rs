//! [`Mailer`] over WASI sockets (`std::net::TcpStream` is `wasi:sockets/tcp` on
//! `wasm32-wasip2`): the core's SMTP dialogue ([`edgevideo_core::smtp::deliver`]) to
//! `SMTP_URL`. Plain SMTP only: a Spin component has no TLS for raw sockets, so a Spin
//! deployment relays through a mail server on its private network (`smtp://relay:25`); the
//! manifest's `allowed_outbound_hosts` must list it (`tcp://relay:25`).

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use edgevideo_core::error::MailError;
use edgevideo_core::ports::{MailStream, Mailer, OutgoingMail};
use edgevideo_core::smtp::{self, SmtpServer};

/// Time limit of connecting and of each read or write.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The mail port: `server` is `SMTP_URL` parsed (`None`: no mail), `helo` our name.
pub struct SocketMailer {
    /// Where mail goes.
    pub server: Option<SmtpServer>,
    /// Our name in `EHLO` (the public host).
    pub helo: String,
}

/// A blocking WASI socket as the SMTP dialogue reads and writes it (one request per
/// instance: blocking blocks nobody else).
struct WasiStream(TcpStream);

fn broken(e: impl std::fmt::Display) -> MailError {
    MailError::Connection(e.to_string())
}

impl MailStream for WasiStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, MailError> {
        self.0.read(buf).map_err(broken)
    }
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), MailError> {
        self.0.write_all(bytes).map_err(broken)
    }
}

impl Mailer for SocketMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let server = self.server.as_ref().ok_or(MailError::NotConfigured)?;
        if server.tls {
            return Err(MailError::Connection(
                "smtps:// needs TLS, which Spin components lack for sockets: relay through \
                 smtp:// on the private network"
                    .into(),
            ));
        }
        let address = (server.host.as_str(), server.port)
            .to_socket_addrs()
            .map_err(broken)?
            .next()
            .ok_or_else(|| MailError::Connection(format!("{} has no address", server.host)))?;
        let socket = TcpStream::connect_timeout(&address, TIMEOUT).map_err(broken)?;
        socket.set_read_timeout(Some(TIMEOUT)).map_err(broken)?;
        socket.set_write_timeout(Some(TIMEOUT)).map_err(broken)?;
        smtp::deliver(&mut WasiStream(socket), server, &self.helo, mail).await
    }
}
