//! Redaction before sealing, as `otaudit.redaction.Redactor.apply` does it: the first
//! rule whose pattern matches an attribute key (`fnmatch.fnmatchcase`) drops the
//! attribute or replaces its value by `hmac-sha256:<hex>`, the HMAC-SHA256 of the
//! value's text form under the redaction key.
//!
//! Patterns are compiled as `fnmatch.translate` (Python 3.11) compiles them: `*`, `?`,
//! sets (`[abc]`, `[!a-z]`, with its handling of `]` first, of empty and reversed ranges
//! and of a `[` without its `]`) and literal characters.

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
    /// A character set: negated or not, its ranges (a single character is a range).
    Set(bool, Vec<(char, char)>),
    /// An empty set: matches nothing.
    Never,
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Any => true,
            Token::Char(x) => *x == c,
            Token::Set(negated, ranges) => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Token::Star | Token::Never => false,
        }
    }
}

/// A shell-style pattern, compiled as `fnmatch.translate` (Python 3.11) compiles it.
#[derive(Clone, Debug)]
pub struct Pattern(Vec<Token>);

/// `fnmatch.translate`'s text of a set (between `[` and `]`, escaped for `re`) from the
/// pattern characters `pat[i..j]`.
fn set_text(pat: &[char], mut i: usize, j: usize) -> String {
    let escape = |chunk: &[char], dashes: bool| {
        let mut out = String::new();
        for &c in chunk {
            if c == '\\' || (dashes && c == '-') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let stuff: Vec<char> = pat[i..j].to_vec();
    let text = if !stuff.contains(&'-') {
        escape(&stuff, false)
    } else {
        let mut chunks: Vec<Vec<char>> = Vec::new();
        let mut k = if pat[i] == '!' { i + 2 } else { i + 1 };
        loop {
            let found = (k..j).find(|&x| pat[x] == '-');
            let Some(at) = found else { break };
            chunks.push(pat[i..at].to_vec());
            i = at + 1;
            k = at + 3;
        }
        let chunk = pat[i..j].to_vec();
        if !chunk.is_empty() {
            chunks.push(chunk);
        } else if let Some(last) = chunks.last_mut() {
            last.push('-');
        }
        let mut k = chunks.len();
        while k > 1 {
            k -= 1;
            let (prev_last, first) = (chunks[k - 1].last().copied(), chunks[k].first().copied());
            if let (Some(a), Some(b)) = (prev_last, first) {
                if a > b {
                    let mut merged = chunks[k - 1][..chunks[k - 1].len() - 1].to_vec();
                    merged.extend_from_slice(&chunks[k][1..]);
                    chunks[k - 1] = merged;
                    chunks.remove(k);
                }
            }
        }
        chunks
            .iter()
            .map(|c| escape(c, true))
            .collect::<Vec<_>>()
            .join("-")
    };
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '&' | '~' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The token of a set as `re` reads `[text]` (`text` as [`set_text`] makes it).
fn set_token(text: &str) -> Token {
    if text.is_empty() {
        return Token::Never;
    }
    if text == "!" {
        return Token::Any;
    }
    let chars: Vec<char> = text.chars().collect();
    let (negated, mut at) = match chars[0] {
        '!' => (true, 1),
        _ => (false, 0),
    };
    // `^` or `[` first is escaped by translate: a literal either way.
    let mut items: Vec<(char, bool)> = Vec::new(); // (character, escaped)
    while at < chars.len() {
        if chars[at] == '\\' && at + 1 < chars.len() {
            items.push((chars[at + 1], true));
            at += 2;
        } else {
            items.push((chars[at], false));
            at += 1;
        }
    }
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < items.len() {
        let (c, _) = items[k];
        if k + 2 < items.len() && items[k + 1] == ('-', false) {
            ranges.push((c, items[k + 2].0));
            k += 3;
        } else {
            ranges.push((c, c));
            k += 1;
        }
    }
    Token::Set(negated, ranges)
}

impl Pattern {
    /// The compiled pattern.
    pub fn new(pattern: &str) -> Pattern {
        let pat: Vec<char> = pattern.chars().collect();
        let n = pat.len();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < n {
            let c = pat[i];
            i += 1;
            match c {
                '*' if tokens.last() == Some(&Token::Star) => {}
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '[' => {
                    let mut j = i;
                    if j < n && pat[j] == '!' {
                        j += 1;
                    }
                    if j < n && pat[j] == ']' {
                        j += 1;
                    }
                    while j < n && pat[j] != ']' {
                        j += 1;
                    }
                    if j >= n {
                        tokens.push(Token::Char('['));
                    } else {
                        tokens.push(set_token(&set_text(&pat, i, j)));
                        i = j + 1;
                    }
                }
                c => tokens.push(Token::Char(c)),
            }
        }
        Pattern(tokens)
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
                Some(token) if token.matches(text[t]) => {
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
        Pattern::new(pattern).matches(text)
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
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "bx"));
        assert!(m("[a-c]", "b"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(m("[", "["));
        assert!(!m("[b-a]", "a"));
        assert!(m("[!b-a]", "z"));
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
