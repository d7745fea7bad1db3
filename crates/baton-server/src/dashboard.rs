//! The dashboard: its files compiled into the binary and served at `/`
//! and `/ui/`, so it works offline and with nothing else installed. It is
//! a client of the public API only (see `assets/api.js`); the key it holds
//! lives in the browser tab, sent as a bearer header, never as a cookie.
//! The content security policy lets the page load nothing but its own
//! files and talk to nothing but this server.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// One file of the dashboard.
#[derive(Clone, Copy)]
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_bytes!("../assets/index.html"),
    content_type: "text/html; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_bytes!("../assets/app.css"),
    content_type: "text/css; charset=utf-8",
};

/// The page's script, as ES modules: `app.js` imports the others.
const MODULES: [(&str, &[u8]); 4] = [
    ("app.js", include_bytes!("../assets/app.js")),
    ("api.js", include_bytes!("../assets/api.js")),
    ("view.js", include_bytes!("../assets/view.js")),
    ("graph.js", include_bytes!("../assets/graph.js")),
];

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    let mut routes = Router::new()
        .route("/", get(|| async { serve(&INDEX) }))
        .route("/ui/app.css", get(|| async { serve(&STYLE) }));
    for (name, body) in MODULES {
        let asset = Asset {
            body,
            content_type: "text/javascript; charset=utf-8",
        };
        routes = routes.route(
            &format!("/ui/{name}"),
            get(move || async move { serve(&asset) }),
        );
    }
    routes
}

fn serve(asset: &Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary brings new files; the browser asks again each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
