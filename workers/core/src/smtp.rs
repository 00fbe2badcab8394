//! The SMTP client (RFC 5321) that hands our mail to the deployment's mail server, over a
//! connection the host opens ([`MailStream`]): greeting, `EHLO`, `AUTH PLAIN` when the
//! server URL carries credentials, `MAIL FROM`, `RCPT TO`, `DATA`, `QUIT`. Replies are
//! parsed by `smtp-proto`; the dialogue is ours because the Rust SMTP clients (lettre,
//! mail-send) own their sockets (tokio, native TLS), which a Worker cannot give them.
//!
//! TLS is implicit (`smtps://`, port 465), opened by the host around the stream; there is no
//! `STARTTLS`. Plain `smtp://` is for a relay on the same private network (or a test
//! server): production refuses credentials over it ([`crate::config`]).

use base64::Engine as _;
use smtp_proto::response::parser::ResponseReceiver;

use crate::error::MailError;
pub use crate::model::smtp_server::{helo_name, SmtpServer};
use crate::ports::{MailStream, OutgoingMail};

/// Longest reply we read, in bytes: far above any real server's.
const MAX_REPLY_BYTES: usize = 16 * 1024;

/// One SMTP reply.
#[derive(Debug)]
struct Reply {
    code: u16,
    message: String,
}

/// Reads the stream a reply at a time.
struct Replies<'s, S> {
    stream: &'s mut S,
    buffered: Vec<u8>,
}

impl<S: MailStream> Replies<'_, S> {
    /// The next complete reply (all lines of a multi-line one).
    async fn next(&mut self) -> Result<Reply, MailError> {
        let mut receiver = ResponseReceiver::default();
        let mut read = 0usize;
        loop {
            if !self.buffered.is_empty() {
                let mut bytes = self.buffered.iter();
                let parsed = receiver.parse(&mut bytes);
                let rest = bytes.as_slice().to_vec();
                self.buffered = rest;
                match parsed {
                    Ok(response) => {
                        return Ok(Reply {
                            code: response.code,
                            message: response.message,
                        })
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(e) => return Err(MailError::Protocol(format!("bad reply: {e:?}"))),
                }
            }
            let mut chunk = [0u8; 2048];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(MailError::Connection(
                    "the server closed the connection".into(),
                ));
            }
            read += n;
            if read > MAX_REPLY_BYTES {
                return Err(MailError::Protocol("reply too long".into()));
            }
            self.buffered.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `command` (without its CRLF) and reads its reply, which must be `expected`.
    async fn command(
        &mut self,
        step: &'static str,
        command: &str,
        expected: u16,
    ) -> Result<Reply, MailError> {
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.stream.write_all(&line).await?;
        self.expect(step, expected).await
    }

    /// Reads a reply that must be `expected`.
    async fn expect(&mut self, step: &'static str, expected: u16) -> Result<Reply, MailError> {
        let reply = self.next().await?;
        if reply.code == expected {
            Ok(reply)
        } else {
            Err(MailError::Refused {
                step,
                code: reply.code,
                message: reply.message.trim().chars().take(300).collect(),
            })
        }
    }
}

/// Whether `address` can stand in `MAIL FROM:<...>` / `RCPT TO:<...>` as it is: printable
/// ASCII without spaces or angle brackets (our addresses are validated before this).
fn plain_address(address: &str) -> bool {
    !address.is_empty()
        && address
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// `data` with each line starting with `.` doubled (RFC 5321 4.5.2), bare LFs made CRLF,
/// ending in CRLF, followed by the end-of-data line.
fn dot_stuffed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut line_start = true;
    let mut previous = 0u8;
    for &b in data {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        line_start = b == b'\n';
        previous = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Hands `mail` to the server at the other end of `stream` (already connected, TLS opened
/// for `smtps`). `helo` names us in `EHLO`.
///
/// # Errors
/// [`MailError::Refused`] when a step gets an error reply (the message was not accepted),
/// [`MailError::Connection`] / [`MailError::Protocol`] when the connection or the replies
/// fail.
pub async fn deliver<S: MailStream>(
    stream: &mut S,
    server: &SmtpServer,
    helo: &str,
    mail: &OutgoingMail,
) -> Result<(), MailError> {
    if !plain_address(&mail.from) || !plain_address(&mail.to) {
        return Err(MailError::Protocol(
            "an envelope address cannot be sent as it is".into(),
        ));
    }
    let mut replies = Replies {
        stream,
        buffered: Vec::new(),
    };
    replies.expect("the greeting", 220).await?;
    replies
        .command("EHLO", &format!("EHLO {helo}"), 250)
        .await?;
    if let Some((user, password)) = &server.credentials {
        let plain = format!("\0{user}\0{password}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
        replies
            .command("AUTH", &format!("AUTH PLAIN {encoded}"), 235)
            .await?;
    }
    replies
        .command("MAIL FROM", &format!("MAIL FROM:<{}>", mail.from), 250)
        .await?;
    replies
        .command("RCPT TO", &format!("RCPT TO:<{}>", mail.to), 250)
        .await?;
    replies.command("DATA", "DATA", 354).await?;
    replies.stream.write_all(&dot_stuffed(&mail.data)).await?;
    replies.expect("the message", 250).await?;
    // The message is accepted; a failed goodbye changes nothing.
    let _ = replies.command("QUIT", "QUIT", 221).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: the replies it gives, in order, one per read; what it was sent.
    struct Script {
        replies: std::collections::VecDeque<&'static [u8]>,
        sent: Vec<u8>,
    }

    impl MailStream for Script {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, MailError> {
            let Some(reply) = self.replies.pop_front() else {
                return Ok(0);
            };
            buf[..reply.len()].copy_from_slice(reply);
            Ok(reply.len())
        }
        async fn write_all(&mut self, bytes: &[u8]) -> Result<(), MailError> {
            self.sent.extend_from_slice(bytes);
            Ok(())
        }
    }

    /// A server that gives `replies`, one per read.
    fn script(replies: &[&'static [u8]]) -> Script {
        Script {
            replies: replies.iter().copied().collect(),
            sent: Vec::new(),
        }
    }

    fn mail() -> OutgoingMail {
        OutgoingMail {
            from: "no-reply@example.com".into(),
            to: "ann@example.org".into(),
            data: b"Subject: hi\r\n\r\n.leading dot\r\nbare\nend".to_vec(),
        }
    }

    #[test]
    fn a_message_is_delivered_in_order_with_auth_and_dot_stuffing() {
        let mut server = script(&[
            &b"220 mail.test ESMTP\r\n"[..],
            b"250-mail.test\r\n250-AUTH PLAIN\r\n",
            b"250 8BITMIME\r\n",
            b"235 2.7.0 ok\r\n",
            b"250 ok\r\n",
            b"250 ok\r\n",
            b"354 go ahead\r\n",
            b"250 2.0.0 queued as X\r\n",
            b"221 bye\r\n",
        ]);
        let smtp = SmtpServer::parse("smtps://me:secret@mail.test").unwrap();
        pollster::block_on(deliver(&mut server, &smtp, "edge.test", &mail())).unwrap();
        let sent = String::from_utf8(server.sent).unwrap();
        assert_eq!(
            sent,
            "EHLO edge.test\r\nAUTH PLAIN AG1lAHNlY3JldA==\r\nMAIL FROM:<no-reply@example.com>\r\n\
             RCPT TO:<ann@example.org>\r\nDATA\r\nSubject: hi\r\n\r\n..leading dot\r\nbare\r\nend\r\n.\r\n\
             QUIT\r\n"
        );
    }

    #[test]
    fn a_refusal_names_the_step_and_stops() {
        let mut server = script(&[
            &b"220 hi\r\n"[..],
            b"250 hi\r\n",
            b"250 ok\r\n",
            b"550 5.1.1 no such user\r\n",
        ]);
        let smtp = SmtpServer::parse("smtp://mail.test").unwrap();
        let err =
            pollster::block_on(deliver(&mut server, &smtp, "edge.test", &mail())).unwrap_err();
        assert!(
            matches!(&err, MailError::Refused { step: "RCPT TO", code: 550, message } if message.contains("no such user")),
            "{err:?}"
        );
        assert!(!String::from_utf8(server.sent).unwrap().contains("DATA"));
    }

    #[test]
    fn a_closed_connection_or_garbage_is_an_error_not_a_hang() {
        for replies in [vec![], vec![&b"hello\r\n"[..]], vec![&b"220 hi\r\n"[..]]] {
            let mut server = script(&replies);
            let smtp = SmtpServer::parse("smtp://mail.test").unwrap();
            let err = pollster::block_on(deliver(&mut server, &smtp, "e", &mail())).unwrap_err();
            assert!(
                matches!(err, MailError::Connection(_) | MailError::Protocol(_)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn envelope_addresses_cannot_inject_commands() {
        let mut server = script(&[]);
        let smtp = SmtpServer::parse("smtp://mail.test").unwrap();
        let mut evil = mail();
        evil.to = "a@b.c>\r\nRCPT TO:<x@y.z".into();
        let err = pollster::block_on(deliver(&mut server, &smtp, "e", &evil)).unwrap_err();
        assert!(matches!(err, MailError::Protocol(_)));
        assert!(server.sent.is_empty());
    }
}
