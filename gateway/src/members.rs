//! The members allowed to log on: names, accounts and their secrets, kept only as SHA-256
//! digests, checked when the table is built and swapped whole on a reload.
//!
//! A member's secret (the binary Logon's token, FIX Password 554) is a random API key, not a
//! password a person chose: a node looks a binary Logon up by the digest of the token it
//! presents, so the digest is unsalted, as API keys are stored. Tokens of 8 to 32 printable
//! characters fit the binary Logon; make them random and long (32 characters of base64 or
//! hex: 190 or 128 bits), since a leaked digest of a short one could be searched.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

/// One member with its secret in clear, as a test or `exchange member-token` holds it. A
/// table built from it keeps only the secret's digest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// FIX Username (553) and the name in logs.
    pub name: String,
    /// The secret: FIX Password (554), or the binary Logon's token (at most 32 bytes).
    pub token: String,
    pub account: u64,
}

/// One member as a members file holds it: the secret's SHA-256, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedMember {
    pub name: String,
    /// SHA-256 of the token, 64 hex digits ([`token_digest`]).
    pub token_sha256: String,
    pub account: u64,
}

/// Who logged on: the member's name and account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub account: u64,
}

/// The members allowed to log on.
#[derive(Clone, Debug, Default)]
pub struct Members {
    by_digest: HashMap<[u8; 32], Holder>,
}

/// Why a member table is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("member {0:?}: the token must be 8 to 32 printable ASCII characters")]
    BadToken(String),
    #[error("member {0:?}: token_sha256 must be 64 hex digits (exchange member-token)")]
    BadDigest(String),
    #[error("member {0:?}: a token, name or account is used twice")]
    Duplicate(String),
}

/// `bytes` as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a member's token, as 64 lowercase hex digits.
pub fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 hex digits (128 bits) from the operating system's random source.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex(&bytes)
}

/// A SHA-256 digest written as 64 hex digits (either case); `None` for anything else.
pub fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (at, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        digest[at] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

fn valid_token(token: &str) -> bool {
    (8..=32).contains(&token.len()) && token.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

impl Members {
    /// A table of members whose tokens are given in clear: each checked (8..=32 printable
    /// ASCII), then kept as its digest only.
    pub fn new(members: Vec<Member>) -> Result<Members, MembersError> {
        let hashed = members
            .into_iter()
            .map(|m| {
                if !valid_token(&m.token) {
                    return Err(MembersError::BadToken(m.name));
                }
                Ok(HashedMember {
                    token_sha256: token_digest(&m.token),
                    name: m.name,
                    account: m.account,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Members::hashed(hashed)
    }

    /// A table of members given by their tokens' digests: no digest, name or account twice.
    pub fn hashed(members: Vec<HashedMember>) -> Result<Members, MembersError> {
        let entries = members.into_iter().map(|member| {
            let Some(digest) = parse_digest(&member.token_sha256) else {
                return Err(MembersError::BadDigest(member.name));
            };
            let holder = Holder {
                name: member.name,
                account: member.account,
            };
            Ok((digest, holder))
        });
        Members::from_entries(entries)
    }

    /// This table with `more` added (the inline members and a members file together).
    pub fn with(self, more: Members) -> Result<Members, MembersError> {
        let both = self.by_digest.into_iter().chain(more.by_digest);
        Members::from_entries(both.map(Ok))
    }

    /// The table of `entries`, refusing the first bad one or the first digest, name or
    /// account seen twice.
    fn from_entries(
        entries: impl Iterator<Item = Result<([u8; 32], Holder), MembersError>>,
    ) -> Result<Members, MembersError> {
        let mut by_digest = HashMap::new();
        let (mut names, mut accounts) = (HashSet::new(), HashSet::new());
        for entry in entries {
            let (digest, holder) = entry?;
            if by_digest.contains_key(&digest)
                || !accounts.insert(holder.account)
                || !names.insert(holder.name.clone())
            {
                return Err(MembersError::Duplicate(holder.name));
            }
            by_digest.insert(digest, holder);
        }
        Ok(Members { by_digest })
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The member holding `token` (the binary Logon).
    pub fn by_token(&self, token: &str) -> Option<Holder> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_digest.get(&digest).cloned()
    }

    /// The member with this name and token (the FIX Logon).
    pub fn login(&self, name: &str, token: &str) -> Option<Holder> {
        self.by_token(token).filter(|m| m.name == name)
    }

    /// Whether a member has this name (a FIX session is admitted only for a member's
    /// SenderCompID, before its credentials are checked).
    pub fn has_name(&self, name: &str) -> bool {
        self.by_digest.values().any(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, token: &str, account: u64) -> Member {
        Member {
            name: name.into(),
            token: token.into(),
            account,
        }
    }

    #[test]
    fn a_table_keeps_digests_and_finds_members_by_their_tokens() {
        let members = Members::new(vec![member("alice", "alice-token-0001", 1)]).unwrap();
        let alice = Holder {
            name: "alice".into(),
            account: 1,
        };
        assert_eq!(members.by_token("alice-token-0001"), Some(alice.clone()));
        assert_eq!(members.login("alice", "alice-token-0001"), Some(alice));
        assert_eq!(members.login("bob", "alice-token-0001"), None);
        assert_eq!(members.by_token("alice-token-0002"), None);
        assert!(!format!("{members:?}").contains("alice-token-0001"));
        // The same member from its digest.
        let hashed = Members::hashed(vec![HashedMember {
            name: "alice".into(),
            token_sha256: token_digest("alice-token-0001").to_uppercase(),
            account: 1,
        }])
        .unwrap();
        assert!(hashed.by_token("alice-token-0001").is_some());
    }

    #[test]
    fn bad_tokens_digests_and_duplicates_are_refused_by_name() {
        let short = Members::new(vec![member("a", "short", 1)]).unwrap_err();
        assert_eq!(short, MembersError::BadToken("a".into()));
        let digest = HashedMember {
            name: "b".into(),
            token_sha256: "abc".into(),
            account: 2,
        };
        assert_eq!(
            Members::hashed(vec![digest]).unwrap_err(),
            MembersError::BadDigest("b".into())
        );
        let twice = vec![
            member("a", "token-0000001", 1),
            member("b", "token-0000002", 1),
        ];
        assert_eq!(
            Members::new(twice).unwrap_err(),
            MembersError::Duplicate("b".into())
        );
        let one = Members::new(vec![member("a", "token-0000001", 1)]).unwrap();
        let same_name = Members::new(vec![member("a", "token-0000002", 2)]).unwrap();
        assert!(one.with(same_name).is_err());
    }
}
