//! What `http` tasks and agent calls may reach. Link-local addresses
//! (169.254.0.0/16, fe80::/10) are where cloud metadata services answer,
//! with the machine's credentials, to anyone on it: a workflow, or a
//! template filled from a request, must not reach them (SSRF). They are
//! refused, with the other metadata addresses providers use, unless
//! `[engine] allow_link_local`. Checked on every address a name resolves
//! to (a name pointing there is refused too), on an address written in
//! the URL, and on every redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

/// Whether `ip` is one tasks may not reach.
pub(crate) fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => v4_forbidden(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => v4_forbidden(mapped),
            // fe80::/10, and AWS's metadata service over IPv6.
            None => {
                (ip.segments()[0] & 0xffc0) == 0xfe80
                    || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
            }
        },
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    // Link-local (AWS, GCP, Azure, OpenStack metadata at 169.254.169.254),
    // and Alibaba Cloud's metadata address.
    ip.is_link_local() || ip == Ipv4Addr::new(100, 100, 100, 200)
}

/// Why `url` may not be asked, when it names a forbidden address itself.
pub(crate) fn refused(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    // An IPv6 address is written in brackets; a name does not parse.
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    forbidden(ip).then(|| message(&ip.to_string()))
}

fn message(what: &str) -> String {
    format!(
        "{what} is a link-local or cloud metadata address, which tasks and agents may not reach ([engine] allow_link_local = true lets them)"
    )
}

/// The client `http` tasks and agents use: guarded unless `allow`. The
/// engine installs the TLS provider before it asks for one.
pub(crate) fn client(allow: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let guarded = if allow {
        builder
    } else {
        builder
            .dns_resolver(Arc::new(Guarded))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if let Some(why) = refused(attempt.url().as_str()) {
                    attempt.error(why)
                } else if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
                } else {
                    attempt.follow()
                }
            }))
    };
    // Building fails only without a TLS provider, which the engine
    // installs first (as `reqwest::Client::new`, used before, it cannot go
    // on without one); an unguarded client is never the fallback.
    guarded
        .build()
        .expect("an HTTP client builds once the TLS provider is installed")
}

/// The system's resolver, keeping only addresses tasks may reach.
struct Guarded;

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|address| !forbidden(address.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(
                    message(&format!("`{host}` resolves only to {}", found[0].ip())).into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_forbidden_and_the_rest_are_not() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.5",
            "192.168.1.1",
            "8.8.8.8",
            "::1",
            "fd00::1",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_url_naming_a_forbidden_address_is_refused_and_a_name_is_left_to_the_resolver() {
        assert!(refused("http://169.254.169.254/latest/meta-data/").is_some());
        assert!(refused("http://[fe80::1]:8080/").is_some());
        assert!(refused("http://127.0.0.1:8080/").is_none());
        assert!(refused("http://metadata.google.internal/").is_none());
    }
}
