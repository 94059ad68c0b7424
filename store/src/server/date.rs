//! The `Date` header of every answer, from the member's wall clock ([`WallClock`]).
//!
//! hyper adds a `Date` from the system clock to each HTTP/2 response that has none, and HPACK
//! sends it as one byte while the second stays the same and as a 26-byte literal when it
//! changes. Under the simulation that made frame sizes, and with them the order the
//! apiservers' watch tasks ran in, depend on how fast the machine simulated (a replay of a
//! control-plane seed diverged at 8.7 s). Setting it here from the seam keeps production's
//! header (the system clock) and gives the simulation its own time; hyper keeps a `Date` it
//! finds.

use crate::seams::WallClock;
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The header value for `unix_secs`, in HTTP's IMF-fixdate form.
pub fn http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs))
}

/// An axum response middleware (`map_response_with_state`) that sets `Date` from `clock`.
pub async fn set_date(State(clock): State<Arc<dyn WallClock>>, mut res: Response) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(&http_date(clock.unix_secs())) {
        res.headers_mut().insert(http::header::DATE, v);
    }
    res
}

/// `router` with every answer's `Date` from `clock`.
pub fn with_date(router: axum::Router, clock: Arc<dyn WallClock>) -> axum::Router {
    router.layer(axum::middleware::map_response_with_state(clock, set_date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_796_000_000), "Mon, 30 Nov 2026 00:53:20 GMT");
    }
}
