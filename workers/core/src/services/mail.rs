//! The mail we send: the email-verification link after a signup (or a sign-in of an
//! unverified account), and the notice that an address already has an account (what a
//! signup of a verified address gets, so that the signup's answer tells nothing). Messages
//! are built with `mail-builder` and handed to the platform's [`Mailer`]; at most
//! [`MAILS_PER_ADDRESS_PER_HOUR`] go to one address, so signups cannot flood a mailbox.

use mail_builder::headers::date::Date;
use mail_builder::MessageBuilder;

use crate::error::{MailError, StoreError};
use crate::ports::{Mailer, OutgoingMail, Platform};
use crate::services::ratelimit;

/// Mails one address may receive per hour; more are dropped silently.
pub const MAILS_PER_ADDRESS_PER_HOUR: u64 = 5;

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The mail server failed.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// The per-address limit could not be counted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a mail says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Confirm the address: the link (`{origin}/verify#{token}`).
    Verify {
        /// The verification page's URL with the token.
        link: String,
    },
    /// Someone tried to create an account for an address that has one.
    AccountExists {
        /// The sign-in page.
        login: String,
    },
}

impl Notice {
    fn subject(&self) -> &'static str {
        match self {
            Notice::Verify { .. } => "Confirm your email for edgevideo",
            Notice::AccountExists { .. } => "You already have an edgevideo account",
        }
    }

    fn text(&self) -> String {
        match self {
            Notice::Verify { link } => format!(
                "Someone, hopefully you, created an edgevideo account with this address.\r\n\
                 \r\n\
                 To confirm it, open this link within 24 hours and enter the password you \
                 chose:\r\n\
                 \r\n\
                 {link}\r\n\
                 \r\n\
                 If it was not you, ignore this mail: nothing happens without the link.\r\n"
            ),
            Notice::AccountExists { login } => format!(
                "Someone, hopefully you, tried to create an edgevideo account with this \
                 address, which already has one.\r\n\
                 \r\n\
                 Sign in here instead: {login}\r\n\
                 \r\n\
                 If it was not you, ignore this mail: your account is unchanged.\r\n"
            ),
        }
    }
}

/// The message for `notice` to `to`, dated `now_ms`, with a fresh Message-ID.
pub fn compose<P: Platform>(p: &P, to: &str, notice: &Notice) -> OutgoingMail {
    let from = p.config().mail_from.clone();
    let domain = from
        .rsplit_once('@')
        .map_or("edgevideo.invalid", |(_, d)| d);
    let message_id = format!("{}@{domain}", p.entropy().new_id("msg"));
    let now_s = i64::try_from(p.clock().now_ms() / 1000).unwrap_or(i64::MAX);
    let data = MessageBuilder::new()
        .from(("edgevideo", from.as_str()))
        .to(to)
        .subject(notice.subject())
        .date(Date::new(now_s))
        .message_id(message_id)
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(notice.text())
        .write_to_vec()
        .unwrap_or_default();
    OutgoingMail {
        from,
        to: to.to_owned(),
        data,
    }
}

/// Sends `notice` to `to` unless the address had its hourly share: `Ok(true)` when sent,
/// `Ok(false)` when dropped by the limit.
///
/// # Errors
/// [`SendError`] when the limit cannot be counted or the mail server fails.
pub async fn send<P: Platform>(p: &P, to: &str, notice: &Notice) -> Result<bool, SendError> {
    let scope = format!("mail-to:{to}");
    let now_s = p.clock().now_ms() / 1000;
    let limits = [(scope.as_str(), MAILS_PER_ADDRESS_PER_HOUR)];
    if !ratelimit::hit_counted(p, &limits, 3600, now_s).await? {
        return Ok(false);
    }
    p.mailer().send(&compose(p, to, notice)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;

    #[test]
    fn a_verification_mail_carries_the_link_and_proper_headers() {
        let p = MemoryPlatform::development();
        let link = "https://video.example.com/verify#usr_A.tag.99.sig".to_owned();
        let mail = compose(
            &p,
            "ann@example.org",
            &Notice::Verify { link: link.clone() },
        );
        assert_eq!(mail.to, "ann@example.org");
        assert_eq!(mail.from, crate::config::DEV_MAIL_FROM);
        let text = String::from_utf8(mail.data).unwrap();
        for header in [
            "From: \"edgevideo\" <no-reply@edgevideo.invalid>\r\n",
            "To: <ann@example.org>\r\n",
            "Subject: Confirm your email for edgevideo\r\n",
            "Date: Thu, 1 Jan 1970 00:00:00 +0000\r\n",
            "MIME-Version: 1.0\r\n",
        ] {
            assert!(text.contains(header), "{header:?} in {text}");
        }
        assert!(text.contains("Message-ID: <msg_"), "{text}");
        assert!(text.contains(&link), "{text}");
    }
}
