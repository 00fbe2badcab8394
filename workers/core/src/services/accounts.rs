//! Users in the catalogue: creation with a derived role, look-up, and role changes. Emails
//! are normalised (trimmed, lower-cased) before they are stored or compared. The rows are
//! read and written by [`crate::store::users`].

use serde::Serialize;

use crate::config::Config;
use crate::model::role::Role;
use crate::store::users::User;

/// The public view of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserView {
    /// Identifier.
    pub id: String,
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Whether the address was proven by its verification link.
    pub email_verified: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            role: u.role,
            created_at: u.created_at,
            email_verified: u.email_verified_at.is_some(),
        }
    }
}

/// Normalises and validates an email address.
///
/// # Errors
/// A message for the user when it is not a plausible address.
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_ascii_lowercase();
    // Printable ASCII without the characters that need quoting in an address (quoted local
    // parts and SMTPUTF8 are not supported): what can stand in an SMTP envelope as it is.
    let valid = email.len() <= 254
        && email
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b))
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err("a valid email address is required".into())
    }
}

/// The role a verified address implies: admin for `ADMIN_EMAILS`, broadcaster for an email
/// domain in `BROADCASTER_DOMAINS`, viewer otherwise. Only [`role_after_verification`] and
/// the sign-in of a verified account use it: a typed address proves nothing.
pub fn role_for_email(config: &Config, email: &str) -> Role {
    if config.admin_emails.iter().any(|a| a == email) {
        return Role::Admin;
    }
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    if config.broadcaster_domains.iter().any(|d| d == domain) {
        Role::Broadcaster
    } else {
        Role::Viewer
    }
}

/// The role of an account whose address was just verified: what the address implies
/// ([`role_for_email`]) when that is more than a viewer's or admin, else the stored role
/// (a role an admin granted is kept).
pub fn role_after_verification(config: &Config, email: &str, stored: Role) -> Role {
    let implied = role_for_email(config, email);
    if implied == Role::Admin || stored == Role::Viewer {
        implied
    } else {
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(
            normalise_email("  Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@.example.com",
            "ann@example..com",
            "a<b@example.com",
            "\"a b\"@example.com",
            "ann@exämple.com",
            "a,b@example.com",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_derive_from_config() {
        let config = Config::from_lookup(|name| match name {
            "ENVIRONMENT" => Some("development".into()),
            "SESSION_SECRET" | "URL_SIGNING_SECRET" => Some("dev-only-x".into()),
            "BROADCASTER_DOMAINS" => Some("amazon.com".into()),
            "ADMIN_EMAILS" => Some("boss@example.com".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            role_for_email(&config, "jeff@amazon.com"),
            Role::Broadcaster
        );
        assert_eq!(role_for_email(&config, "jeff@notamazon.com"), Role::Viewer);
        assert_eq!(
            role_for_email(&config, "jeff@amazon.com.evil.org"),
            Role::Viewer
        );
        assert_eq!(role_for_email(&config, "boss@example.com"), Role::Admin);
        let after = |email, stored| role_after_verification(&config, email, stored);
        assert_eq!(after("jeff@amazon.com", Role::Viewer), Role::Broadcaster);
        assert_eq!(after("ann@example.org", Role::Viewer), Role::Viewer);
        assert_eq!(after("ann@example.org", Role::Developer), Role::Developer);
        assert_eq!(after("jeff@amazon.com", Role::Developer), Role::Developer);
        assert_eq!(after("boss@example.com", Role::Broadcaster), Role::Admin);
    }
}
