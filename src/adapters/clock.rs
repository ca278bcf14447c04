//! The wall clock, as the RFC 3339 text hybrid stores in tags, locks and
//! bootstrap-token Secrets. Kept apart so the pure stages never read it.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, for comparing with times read back (a lock's expiry).
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Now plus `offset`, to the second, e.g. `2026-11-23T18:00:00Z`.
pub fn rfc3339_from_now(offset: Duration) -> String {
    (OffsetDateTime::now_utc() + offset).replace_nanosecond(0).expect("0 ns is valid").format(&Rfc3339).expect("RFC 3339 formats")
}
