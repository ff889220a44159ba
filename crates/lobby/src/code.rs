//! Join codes: what a host reads out to friends so they can join its match.
//!
//! A code is ten characters of Crockford's base-32 alphabet (no I, L, O or U), shown as two
//! groups of five (`7KQ2M-XC9TD`): 50 bits drawn from the operating system's generator. Unity
//! Relay's six characters of a 20-letter alphabet carry about 26 bits, so with 10,000 live
//! codes one guess in 6,400 hits a match; here one in 10¹¹. Reading is forgiving: case is
//! ignored, dashes and spaces are skipped, and the look-alikes `I`/`L` read as `1`, `O` as `0`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crockford's base-32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code (5 bits each).
pub const CODE_CHARS: usize = 10;
/// Bits of entropy in a code.
pub const CODE_BITS: u32 = 50;

/// A join code (50 random bits). Its `Display` is the grouped form, `7KQ2M-XC9TD`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinCode(u64);

/// Why a string is not a join code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// It has a character outside the alphabet.
    #[error("a join code has only letters and digits (found {0:?})")]
    BadCharacter(char),
    /// It does not have ten characters.
    #[error("a join code has {CODE_CHARS} characters (found {0})")]
    BadLength(usize),
}

impl JoinCode {
    /// A fresh code from the operating system's generator.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)?;
        Ok(Self(u64::from_le_bytes(bytes) & ((1 << CODE_BITS) - 1)))
    }

    /// The code's 50 bits (for stores that key on a number).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The code with these bits (the top 14 are ignored).
    pub fn from_bits(bits: u64) -> Self {
        Self(bits & ((1 << CODE_BITS) - 1))
    }

    /// The ten characters without the dash.
    pub fn compact(self) -> String {
        let mut out = String::with_capacity(CODE_CHARS);
        for i in (0..CODE_CHARS).rev() {
            let digit = (self.0 >> (i * 5)) & 31;
            out.push(char::from(ALPHABET[usize::try_from(digit).unwrap_or(0)]));
        }
        out
    }
}

impl fmt::Display for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compact = self.compact();
        write!(f, "{}-{}", &compact[..5], &compact[5..])
    }
}

impl fmt::Debug for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinCode({self})")
    }
}

fn digit(c: char) -> Option<u64> {
    let c = match c.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        other => other,
    };
    ALPHABET.iter().position(|&a| char::from(a) == c).and_then(|p| u64::try_from(p).ok())
}

impl FromStr for JoinCode {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, CodeError> {
        let mut bits = 0u64;
        let mut count = 0usize;
        for c in s.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let d = digit(c).ok_or(CodeError::BadCharacter(c))?;
            count += 1;
            if count <= CODE_CHARS {
                bits = (bits << 5) | d;
            }
        }
        if count != CODE_CHARS {
            return Err(CodeError::BadLength(count));
        }
        Ok(Self(bits))
    }
}

impl Serialize for JoinCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JoinCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_read_forgivingly() {
        for _ in 0..1000 {
            let code = JoinCode::generate().unwrap();
            let shown = code.to_string();
            assert_eq!(shown.len(), CODE_CHARS + 1);
            assert_eq!(shown.parse::<JoinCode>().unwrap(), code);
            assert_eq!(shown.to_lowercase().replace('-', " ").parse::<JoinCode>().unwrap(), code);
            assert_eq!(
                shown.replace('1', "l").replace('0', "o").parse::<JoinCode>().unwrap(),
                code
            );
        }
        assert_eq!("ABCDE-FGHJ".parse::<JoinCode>(), Err(CodeError::BadLength(9)));
        assert_eq!("ABCDE-FGHJKM".parse::<JoinCode>(), Err(CodeError::BadLength(11)));
        assert_eq!("ABCDE-FGHJU".parse::<JoinCode>(), Err(CodeError::BadCharacter('U')));
        assert_eq!(JoinCode::from_bits(u64::MAX).bits(), (1 << CODE_BITS) - 1);
    }

    #[test]
    fn codes_use_all_fifty_bits() {
        let mut ones = 0u64;
        let mut zeros = 0u64;
        for _ in 0..256 {
            let bits = JoinCode::generate().unwrap().bits();
            ones |= bits;
            zeros |= !bits;
        }
        assert_eq!(ones, (1 << CODE_BITS) - 1, "every bit is sometimes set");
        assert_eq!(zeros & ((1 << CODE_BITS) - 1), (1 << CODE_BITS) - 1, "and sometimes clear");
    }
}
