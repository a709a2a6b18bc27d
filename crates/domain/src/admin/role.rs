//! Who an admin is and what their role lets them do.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What an admin may do. Every admin operation and admin-only field names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    CustomersRead,
    CustomersResetPassword,
    CustomersRevokeTokens,
    SettingsRead,
    SettingsManage,
    AuditRead,
    /// Bulk actions (with the single action's own permission) and their jobs.
    CustomersBulk,
    /// Deleting a customer account (administrators only by default).
    CustomersDelete,
    /// Admin users: list, invite, change role, disable, Force Sign In.
    AdminUsersManage,
    /// Recovering an account frozen by "this wasn't me" (administrators only by default):
    /// whoever has it decides who owns the account.
    CustomersRecover,
    /// `customerDataExport(customerId)`: everything stored about a customer, more than the
    /// console shows (administrators only by default).
    CustomersExport,
    /// Security-event subscriptions (the Integrations page): where account events are sent,
    /// with or without customers' email addresses (administrators only by default).
    IntegrationsManage,
}

impl Permission {
    pub const ALL: [Permission; 12] = [
        Self::CustomersRead,
        Self::CustomersResetPassword,
        Self::CustomersRevokeTokens,
        Self::SettingsRead,
        Self::SettingsManage,
        Self::AuditRead,
        Self::CustomersBulk,
        Self::CustomersDelete,
        Self::AdminUsersManage,
        Self::CustomersRecover,
        Self::CustomersExport,
        Self::IntegrationsManage,
    ];
}

/// An admin has one role; a role is a fixed set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Administrator,
    Support,
    Viewer,
}

impl Role {
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Self::Administrator => &Permission::ALL,
            Self::Support => &[CustomersRead, CustomersResetPassword, CustomersRevokeTokens],
            Self::Viewer => &[CustomersRead],
        }
    }

    /// Default deny: only permissions listed for the role.
    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::Support => "support",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "administrator" => Some(Self::Administrator),
            "support" => Some(Self::Support),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// An admin's login name: 3–64 characters of letters, digits, `.`, `_`, `-`, `@`; unique
/// whatever its case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Option<Self> {
        let name = raw.trim();
        let ok = (3..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        ok.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The key a sign-in looks `raw` up under: a username's, or, for a name that cannot be
    /// one, a key no account has (so it is counted and hashed like an unknown name).
    pub fn sign_in_key(raw: &str) -> String {
        match Self::parse(raw) {
            Some(u) => u.key(),
            None => Self::unparsable_key(raw),
        }
    }

    /// The sign-in name for input that cannot be a username: a short digest behind a `:`
    /// (which no username contains), so it is counted per name yet never matches an account
    /// and never stores the raw input.
    pub fn unparsable_key(raw: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(raw.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("invalid:{hex}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Where invitations go; admins made by the CLI may have none.
    pub email: Option<String>,
    /// A disabled admin can neither sign in nor use a token.
    pub disabled: bool,
}

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub admin: AdminUser,
    pub session_id: crate::SessionId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_exactly_the_spec_permissions() {
        use Permission::*;
        assert!(
            Permission::ALL
                .iter()
                .all(|p| Role::Administrator.allows(*p))
        );
        let support: Vec<_> = Permission::ALL
            .iter()
            .filter(|p| Role::Support.allows(**p))
            .collect();
        assert_eq!(
            support,
            [
                &CustomersRead,
                &CustomersResetPassword,
                &CustomersRevokeTokens
            ]
        );
        let viewer: Vec<_> = Permission::ALL
            .iter()
            .filter(|p| Role::Viewer.allows(**p))
            .collect();
        assert_eq!(viewer, [&CustomersRead]);
        assert_eq!(Role::parse("Support"), Some(Role::Support));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn usernames_are_bounded_and_plain() {
        assert_eq!(Username::parse(" Admin.One ").unwrap().key(), "admin.one");
        for bad in ["ab", "has space", "a\u{0}dmin", "ad\nmin", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_none(), "{bad:?}");
        }
    }
}
