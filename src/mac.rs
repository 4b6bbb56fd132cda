//! MAC addresses: random locally administered unicast ones from the OS
//! CSPRNG, and the text form used in JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A fresh random MAC: locally administered (bit 1 set), unicast (bit 0
    /// clear), from `getrandom(2)` so two pods never derive the same one.
    pub fn random() -> Result<Mac> {
        let mut b = [0u8; 6];
        let mut filled = 0;
        while filled < b.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `b`.
            let n =
                unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Internal(format!("getrandom: {e}")));
            }
            filled += n as usize;
        }
        b[0] = (b[0] | 0x02) & !0x01;
        Ok(Mac(b))
    }

    pub fn from_slice(s: &[u8]) -> Option<Mac> {
        <[u8; 6]>::try_from(s).ok().map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mac> {
        let bad = || Error::Config(format!("bad MAC address {s:?}"));
        let mut b = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut b {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(b))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_local_unicast_and_differs() {
        let a = Mac::random().unwrap();
        let b = Mac::random().unwrap();
        assert_ne!(a, b);
        for m in [a, b] {
            assert_eq!(m.0[0] & 0x03, 0x02);
        }
    }

    #[test]
    fn text_round_trip() {
        let m: Mac = "42:a4:a6:22:80:2e".parse().unwrap();
        assert_eq!(m.to_string(), "42:a4:a6:22:80:2e");
        assert!("42:a4:a6:22:80".parse::<Mac>().is_err());
        assert!("42:a4:a6:22:80:2e:00".parse::<Mac>().is_err());
        assert!("zz:a4:a6:22:80:2e".parse::<Mac>().is_err());
    }
}
