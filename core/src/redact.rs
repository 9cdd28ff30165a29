//! Redaction before sealing, as `otaudit.redaction.Redactor.apply` does it: the first
//! rule whose pattern matches an attribute key (`fnmatch.fnmatchcase`) drops the
//! attribute or replaces its value by `hmac-sha256:<hex>`, the HMAC-SHA256 of the
//! value's text form under the redaction key.
//!
//! Patterns here are `*`, `?` and literal characters; a pattern with `[` (a character
//! set) is not compiled ([`Pattern::new`] says None) and the caller keeps such rules on
//! the Python path.

use sha2::{Digest, Sha256};

/// What a rule does to the attributes it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Drop,
    Hmac,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Char(char),
}

/// A shell-style pattern of `*`, `?` and literal characters.
#[derive(Clone, Debug)]
pub struct Pattern(Vec<Token>);

impl Pattern {
    /// The pattern, or None when it holds `[` (left to `fnmatch`).
    pub fn new(pattern: &str) -> Option<Pattern> {
        let mut tokens = Vec::new();
        for c in pattern.chars() {
            match c {
                '[' => return None,
                '*' if tokens.last() == Some(&Token::Star) => {}
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                c => tokens.push(Token::Char(c)),
            }
        }
        Some(Pattern(tokens))
    }

    /// `fnmatch.fnmatchcase(text, pattern)`.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pat = &self.0;
        let (mut t, mut p) = (0, 0);
        let mut back: Option<(usize, usize)> = None; // (pattern after the star, text there)
        while t < text.len() {
            match pat.get(p) {
                Some(Token::Star) => {
                    back = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                Some(Token::Any) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                Some(Token::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
            match back {
                Some((bp, bt)) => {
                    p = bp;
                    t = bt + 1;
                    back = Some((bp, bt + 1));
                }
                None => return false,
            }
        }
        pat[p..].iter().all(|tok| *tok == Token::Star)
    }
}

/// The rules in order and the HMAC key.
#[derive(Clone, Debug)]
pub struct Redactor {
    pub rules: Vec<(Action, Pattern)>,
    pub key: Vec<u8>,
}

/// `otaudit.redaction.MARK`.
pub const MARK: &str = "otaudit.redacted";
const PREFIX: &str = "hmac-sha256:";

impl Redactor {
    /// The action of the first rule matching `key`.
    pub fn action(&self, key: &str) -> Option<Action> {
        self.rules
            .iter()
            .find(|(_, pattern)| pattern.matches(key))
            .map(|(action, _)| *action)
    }

    /// `Redactor.pseudonym`: `hmac-sha256:` and the HMAC-SHA256 of `text`, in hex.
    pub fn pseudonym(&self, text: &str) -> String {
        let mut out = String::with_capacity(PREFIX.len() + 64);
        out.push_str(PREFIX);
        crate::canonical::write_hex(&mut out, &hmac_sha256(&self.key, text.as_bytes()));
        out
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern).unwrap().matches(text)
    }

    #[test]
    fn patterns_match_as_fnmatchcase() {
        assert!(m("enduser.email", "enduser.email"));
        assert!(!m("enduser.email", "enduser.emails"));
        assert!(m("http.request.header.*", "http.request.header.x"));
        assert!(m("*.ssn", "a.b.ssn"));
        assert!(!m("*.ssn", "ssn"));
        assert!(m("*", ""));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(m("a*", "a\nb"));
        assert!(!m("A*", "a"));
        assert!(Pattern::new("[ab]").is_none());
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mut hex = String::new();
        crate::canonical::write_hex(
            &mut hex,
            &hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
        );
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
