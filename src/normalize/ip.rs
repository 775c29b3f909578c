//! The client's IP address (`customerRealIp`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const LOOPBACK: &str = "127.0.0.1";

/// Why an address was rejected; the message is shown to API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    #[error("invalid IP syntax")]
    Syntax,
    #[error("brackets not allowed")]
    Brackets,
    #[error("port not allowed")]
    Port,
    #[error("CIDR prefix not allowed")]
    Cidr,
    #[error("zone id not allowed")]
    ZoneId,
}

/// An address in the one spelling that is stored: dotted IPv4, or RFC 5952 IPv6.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(String);

impl ClientIp {
    /// `None`, blank and the local aliases all mean the caller itself: `127.0.0.1`.
    pub fn parse(input: Option<&str>) -> Result<ClientIp, IpError> {
        let s = input.unwrap_or_default().trim();
        if s.is_empty() || s.eq_ignore_ascii_case("localhost") {
            return Ok(ClientIp(LOOPBACK.to_owned()));
        }
        // std's parsers are strict: no leading zeros, hex, short or integer forms.
        let addr = match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                // `to_ipv4` would also unwrap the deprecated `::a.b.c.d` form, which
                // is a different address.
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            Ok(v4) => v4,
            Err(_) => return Err(classify(s)),
        };
        let unspecified_or_local = match addr {
            IpAddr::V4(v4) => v4 == Ipv4Addr::UNSPECIFIED,
            IpAddr::V6(v6) => v6 == Ipv6Addr::UNSPECIFIED || v6 == Ipv6Addr::LOCALHOST,
        };
        if unspecified_or_local {
            return Ok(ClientIp(LOOPBACK.to_owned()));
        }
        Ok(ClientIp(addr.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A more helpful reason for the common near misses; the input is already invalid.
fn classify(s: &str) -> IpError {
    if s.starts_with('[') {
        IpError::Brackets
    } else if s.contains('/') {
        IpError::Cidr
    } else if s.contains('%') {
        IpError::ZoneId
    } else if s.parse::<SocketAddr>().is_ok() {
        IpError::Port
    } else {
        IpError::Syntax
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::vectors;

    #[test]
    fn shared_vectors() {
        let cases = vectors::load("ip.tsv");
        for case in &cases {
            let got = ClientIp::parse(Some(case.input()));
            let line = case.line;
            if case.col(1) == "ERROR" {
                let err = got.expect_err(&format!("ip.tsv line {line}: accepted {:?}", case.input()));
                // The reason column is "<reason>; <why>"; the first part is our message.
                let reason = case.col(2).split(';').next().unwrap_or_default();
                assert_eq!(err.to_string(), reason, "ip.tsv line {line}: wrong reason");
            } else {
                let ip = got.unwrap_or_else(|e| panic!("ip.tsv line {line}: rejected: {e}"));
                assert_eq!(ip.as_str(), case.col(1), "ip.tsv line {line}");
            }
        }
    }

    #[test]
    fn absent_and_aliases() {
        assert_eq!(ClientIp::parse(None).unwrap().as_str(), "127.0.0.1");
        assert_eq!(ClientIp::parse(Some("\u{3000}::1\t")).unwrap().to_string(), "127.0.0.1");
        assert_eq!(ClientIp::parse(Some("LOCALHOST")).unwrap().as_str(), "127.0.0.1");
    }

    #[test]
    fn near_misses_get_specific_reasons() {
        let err = |s: &str| ClientIp::parse(Some(s)).unwrap_err();
        assert_eq!(err("fe80::1%eth0"), IpError::ZoneId);
        assert_eq!(err("1.2.3.4:80"), IpError::Port);
        assert_eq!(err("[::1]"), IpError::Brackets);
        assert_eq!(err("2001:db8::/32"), IpError::Cidr);
        assert_eq!(err("example.com"), IpError::Syntax);
        assert_eq!(err("1.2.3.4\u{200B}"), IpError::Syntax);
    }
}
