//! DNS rebinding: a web page on `evil.example` whose name is made to point
//! at 127.0.0.1 reaches a server on this machine with its own name in the
//! `Host` header. The server answers only names it knows: IP addresses,
//! `localhost`, and the names configured in `allowed_hosts`. A name that
//! resolves to the server by rebinding is none of those.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::problem::ApiError;

/// The middleware: 400 for a `Host` the server does not answer to.
pub(crate) async fn check(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("\u{0}"));
    match host {
        Some(host) if !allowed(host, &app.config.allowed_hosts) => ApiError::BadRequest(format!(
            "this server does not answer to the host `{}`: add it to [server] allowed_hosts",
            host.escape_default()
        ))
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether `host` (`name[:port]`) is an address, `localhost`, or listed.
fn allowed(host: &str, listed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:8080`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || listed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&name))
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn addresses_localhost_and_listed_names_are_answered_and_no_other_name() {
        let listed = ["baton.internal".to_owned()];
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "10.1.2.3:80",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:1",
            "baton.internal:8080",
            "Baton.Internal.",
        ] {
            assert!(allowed(host, &listed), "{host}");
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!allowed(host, &listed), "{host}");
        }
    }
}
