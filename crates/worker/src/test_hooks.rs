//! Test-only routes for benchmarks (served only with `GROUPCAST_TEST_HOOKS=1` and the webhook
//! secret header, like `POST /__test/queue`).
//!
//! `POST /__test/collage?n=N` builds the collage of the photos in the body N times with
//! `groupcast_core::collage::build_collage` (default options) and answers JSON:
//! `{"builds", "photos", "width", "height", "bytes", "quality", "memory_before_bytes",
//! "memory_after_bytes"}`. The body is the photos one after another, each preceded by its length
//! as 4 bytes little-endian ([`split_photos`]): the cheapest format to cut without copying.
//!
//! Time is measured by the caller, from outside: inside Workers `Date.now()` does not advance
//! during pure computation, so the benchmark times the round trip of `?n=0` (body read and split
//! only) against `?n=K` and divides the difference by K. Memory is the wasm linear memory size,
//! which never shrinks: after the builds it is the peak of the module's memory so far (request
//! bodies of earlier calls included).

/// Most builds one call may ask for.
pub const MAX_BUILDS: u32 = 50;

/// Cuts a body of length-prefixed photos (`u32` little-endian length, then the bytes, repeated)
/// into the photos. `None` when a length runs past the end.
pub fn split_photos(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut photos = Vec::new();
    while !body.is_empty() {
        let (len, rest) = body.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (photo, rest) = rest.split_at(len);
        photos.push(photo);
        body = rest;
    }
    Some(photos)
}

/// The number of builds asked for by the query string (`n=K`, default 1, at most
/// [`MAX_BUILDS`]); `None` when `n` is not a number.
pub fn builds_asked(query: &str) -> Option<u32> {
    match groupcast_core::payments::form_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "n")
    {
        None => Some(1),
        Some((_, v)) => v.parse::<u32>().ok().map(|n| n.min(MAX_BUILDS)),
    }
}

#[cfg(target_arch = "wasm32")]
pub use route::collage;

#[cfg(target_arch = "wasm32")]
mod route {
    use super::{builds_asked, split_photos};
    use crate::settings::WorkerSettings;
    use groupcast_core::collage::{build_collage, CollageOptions};
    use worker::{Request, Response};

    /// The wasm linear memory size in bytes (64 KiB pages).
    fn memory_bytes() -> u64 {
        core::arch::wasm32::memory_size::<0>() as u64 * 65_536
    }

    fn text(status: u16, body: &str) -> worker::Result<Response> {
        Ok(Response::ok(body)?.with_status(status))
    }

    /// `POST /__test/collage?n=N` (see the module docs).
    pub async fn collage(req: &mut Request, settings: &WorkerSettings) -> worker::Result<Response> {
        let got = req
            .headers()
            .get("x-telegram-bot-api-secret-token")?
            .unwrap_or_default();
        if !groupcast_core::secret::secret_matches(
            settings.webhook_secret.expose().as_bytes(),
            got.as_bytes(),
        ) {
            return text(401, "unauthorized");
        }
        let Some(builds) = builds_asked(req.url()?.query().unwrap_or("")) else {
            return text(400, "n must be a number");
        };
        let body = req.bytes().await?;
        let Some(photos) = split_photos(&body) else {
            return text(400, "the body is not length-prefixed photos");
        };
        let memory_before = memory_bytes();
        let opts = CollageOptions::default();
        let mut last = None;
        for _ in 0..builds {
            match build_collage(&photos, &opts) {
                Ok(c) => last = Some(c),
                Err(e) => return text(422, &format!("collage failed: {e}")),
            }
        }
        let body = serde_json::json!({
            "builds": builds,
            "photos": photos.len(),
            "width": last.as_ref().map(|c| c.width),
            "height": last.as_ref().map(|c| c.height),
            "bytes": last.as_ref().map(|c| c.jpeg.len()),
            "quality": last.as_ref().map(|c| c.quality),
            "memory_before_bytes": memory_before,
            "memory_after_bytes": memory_bytes(),
        });
        Response::from_json(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(photos: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for p in photos {
            body.extend_from_slice(&(p.len() as u32).to_le_bytes());
            body.extend_from_slice(p);
        }
        body
    }

    #[test]
    fn splits_length_prefixed_photos() {
        let body = framed(&[b"abc", b"", b"de"]);
        assert_eq!(
            split_photos(&body),
            Some(vec![&b"abc"[..], &b""[..], &b"de"[..]])
        );
        assert_eq!(split_photos(&[]), Some(vec![]));
    }

    #[test]
    fn refuses_a_truncated_body() {
        let body = framed(&[b"abcdef"]);
        assert_eq!(split_photos(&body[..body.len() - 1]), None);
        assert_eq!(split_photos(&[1, 0]), None);
    }

    #[test]
    fn reads_the_number_of_builds() {
        assert_eq!(builds_asked(""), Some(1));
        assert_eq!(builds_asked("n=0"), Some(0));
        assert_eq!(builds_asked("x=1&n=3"), Some(3));
        assert_eq!(builds_asked("n=9999"), Some(MAX_BUILDS));
        assert_eq!(builds_asked("n=many"), None);
    }
}
