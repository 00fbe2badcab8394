//! Who a caller is and what it may do: [`Role`] and the authenticated [`Principal`].

use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Watches videos (the default).
    Viewer,
    /// Creates channels and goes live.
    Broadcaster,
    /// Registers and manages plugins.
    Developer,
    /// Grants roles; may do everything.
    Admin,
}

impl Role {
    /// All roles, least privileged first.
    pub const ALL: [Role; 4] = [
        Role::Viewer,
        Role::Broadcaster,
        Role::Developer,
        Role::Admin,
    ];

    /// The role's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Broadcaster => "broadcaster",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role satisfies a route that requires `required`: the same role, or admin.
    pub fn satisfies(self, required: Role) -> bool {
        self == required || self == Role::Admin
    }
}

/// The authenticated caller of a request, as its session token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// The role the token carries (checked against the stored user on sensitive routes).
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_admin_satisfies_everything() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert!(Role::Admin.satisfies(role));
        }
        assert!(!Role::Viewer.satisfies(Role::Broadcaster));
        assert!(!Role::Developer.satisfies(Role::Broadcaster));
        assert!(!Role::Broadcaster.satisfies(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
