//! Where a webhook may be sent. A URL must be http(s) with a host; the addresses it
//! resolves to must be public unless the operator allows more. The check runs when an
//! endpoint is registered and again on every connection (the resolver below), so a name
//! that later resolves to a private address (DNS rebinding) is not followed there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::Url;

/// Which addresses webhooks may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reach {
    /// Public addresses only: the default.
    #[default]
    Public,
    /// Public addresses and this machine's loopback (`--demo`, local development).
    Loopback,
    /// Any address, private networks included (`WEBHOOK_ALLOW_PRIVATE_TARGETS`).
    Private,
}

/// A URL longer than this is refused.
pub const URL_MAX: usize = 2_000;

/// Why a URL may not be a webhook endpoint; the message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(message: impl Into<String>) -> Refused {
    Refused(message.into())
}

/// The URL, if it is one a webhook may be sent to as far as can be told without
/// resolving its host: http(s), a host, no credentials, and an allowed address when the
/// host is one.
pub fn check_url(text: &str, reach: Reach) -> Result<Url, Refused> {
    if text.len() > URL_MAX {
        return Err(refused(format!("the URL is longer than {URL_MAX} characters")));
    }
    let url = Url::parse(text).map_err(|e| refused(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused("the URL must start with http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("the URL must not carry credentials"));
    }
    let ip = match url.host() {
        None => return Err(refused("the URL has no host")),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip {
        check_ip(ip, reach)?;
    }
    Ok(url)
}

/// Checks a URL and every address its host resolves to now.
pub async fn check_target(text: &str, reach: Reach) -> Result<Url, Refused> {
    let url = check_url(text, reach)?;
    if let Some(url::Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| refused(format!("the host {name} does not resolve")))?
            .collect();
        if addrs.is_empty() {
            return Err(refused(format!("the host {name} does not resolve")));
        }
        for addr in addrs {
            check_ip(addr.ip(), reach)?;
        }
    }
    Ok(url)
}

fn check_ip(ip: IpAddr, reach: Reach) -> Result<(), Refused> {
    if allowed(ip, reach) {
        Ok(())
    } else {
        Err(refused(format!(
            "{ip} is a private, loopback or reserved address; webhooks go to public addresses unless the server \
             allows more (WEBHOOK_ALLOW_PRIVATE_TARGETS, or --demo for loopback)"
        )))
    }
}

/// Whether a webhook may connect to `ip`.
pub fn allowed(ip: IpAddr, reach: Reach) -> bool {
    match classify(ip) {
        Class::Public => true,
        Class::Loopback => reach != Reach::Public,
        Class::Private => reach == Reach::Private,
    }
}

enum Class {
    Public,
    Loopback,
    Private,
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
    // reserved
    {
        Class::Private
    } else {
        Class::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64, may reach IPv4 private space
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]
    // IPv4-compatible (deprecated)
    {
        Class::Private
    } else {
        Class::Public
    }
}

/// The HTTP client's resolver: a name's addresses that webhooks may not reach are
/// dropped, and a name left with none fails to connect.
pub struct GuardedResolver(pub Reach);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let reach = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| allowed(a.ip(), reach)).collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address webhooks may reach").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared(reach: Reach) -> Arc<Self> {
        Arc::new(GuardedResolver(reach))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://hooks.example.com/in", Reach::Public).is_ok());
        assert!(check_url("http://93.184.216.34:8080/x", Reach::Public).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "not a url",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(check_url(bad, Reach::Public).is_err(), "{bad} must be refused");
        }
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(URL_MAX)), Reach::Public).is_err());
    }

    #[test]
    fn reach_widens_in_steps() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        assert!(!allowed(loopback, Reach::Public) && allowed(loopback, Reach::Loopback));
        assert!(!allowed(private, Reach::Loopback) && allowed(private, Reach::Private));
        assert!(allowed(public, Reach::Public));
        assert!(check_url("http://127.0.0.1:9/", Reach::Loopback).is_ok());
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked() {
        assert!(check_target("http://localhost:9/", Reach::Public).await.is_err());
        assert!(check_target("http://localhost:9/", Reach::Loopback).await.is_ok());
        assert!(check_target("http://no-such-host.invalid/", Reach::Private).await.is_err());
    }
}
