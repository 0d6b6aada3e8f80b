//! Which `x-request-id` a request goes by. A client's own id is kept when it is short and
//! plain, so that one id can follow a request through the client's logs and ours; anything
//! else is dropped, and the request-id layer makes a UUID instead. A kept id is marked, as
//! a client may send the same one again: the error log keys its items by a new id then.

use axum::extract::Request;

use crate::routes::REQUEST_ID;

/// Longest client id kept.
const MAX_LEN: usize = 64;

/// The request's id came from the client.
#[derive(Debug, Clone, Copy)]
pub struct FromClient;

/// Up to 64 letters, digits, `.`, `_`, `:` or `-`.
pub fn is_plain(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Keeps (and marks) a plain client id; drops any other.
pub async fn screen(mut req: Request) -> Request {
    let mut sent = req.headers().get_all(REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (None, _) => {}
        (Some(id), None) if id.to_str().is_ok_and(is_plain) => {
            req.extensions_mut().insert(FromClient);
        }
        // Not plain, or more than one.
        _ => {
            req.headers_mut().remove(REQUEST_ID);
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_short_and_safe() {
        for good in [
            "trace-me-42",
            "0190f1c2-7b6e-7c41-9a2b-5f3e1d2c3b4a",
            "a.b_c:d",
        ] {
            assert!(is_plain(good), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "has space", "a#b", "a/b", "é", long.as_str()] {
            assert!(!is_plain(bad), "{bad}");
        }
    }
}
