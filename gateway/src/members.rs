//! The members allowed to log on: names, tokens and accounts, checked once at start-up.

use std::collections::{HashMap, HashSet};

/// One member's credentials and account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// FIX Username (553) and the name in logs.
    pub name: String,
    /// The secret: FIX Password (554), or the binary Logon's token (at most 32 bytes).
    pub token: String,
    pub account: u64,
}

/// The members allowed to log on.
#[derive(Clone, Debug, Default)]
pub struct Members {
    by_token: HashMap<String, Member>,
}

/// Why a member table is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("member {0:?}: the token must be 8 to 32 printable ASCII characters")]
    BadToken(String),
    #[error("member {0:?}: a token or account is used twice")]
    Duplicate(String),
}

impl Members {
    /// Checks the table: tokens are 8..=32 printable ASCII (they fit the binary Logon), and no
    /// token or account appears twice.
    pub fn new(members: Vec<Member>) -> Result<Members, MembersError> {
        let mut by_token = HashMap::new();
        let mut accounts = HashSet::new();
        for member in members {
            let token = &member.token;
            if !(8..=32).contains(&token.len())
                || !token.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                return Err(MembersError::BadToken(member.name));
            }
            if by_token.contains_key(token) || !accounts.insert(member.account) {
                return Err(MembersError::Duplicate(member.name));
            }
            by_token.insert(token.clone(), member);
        }
        Ok(Members { by_token })
    }

    /// The member holding `token` (the binary Logon).
    pub fn by_token(&self, token: &str) -> Option<&Member> {
        self.by_token.get(token)
    }

    /// The member with this name and token (the FIX Logon).
    pub fn login(&self, name: &str, token: &str) -> Option<&Member> {
        self.by_token(token).filter(|m| m.name == name)
    }

    /// Whether a member has this name (a FIX session is admitted only for a member's
    /// SenderCompID, before its credentials are checked).
    pub fn has_name(&self, name: &str) -> bool {
        self.by_token.values().any(|m| m.name == name)
    }
}
