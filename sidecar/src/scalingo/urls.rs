//! The URLs the client builds and the one it accepts from an answer.
//!
//! Invariants: an app name is validated before it goes into a path, every
//! path segment is percent-encoded, base URLs carry no credentials, and a
//! scale's `Location` is only trusted on the region's own API origin (the
//! bearer never follows a URL chosen by an answer).

use percent_encoding::percent_decode_str;
use url::Url;

use super::error::ScalingoError;

/// Fails with [`ScalingoError::InvalidAppName`] unless `app` is a valid Scalingo app name.
pub(crate) fn check_app(app: &str) -> Result<(), ScalingoError> {
    if paastis_rules::is_valid_app_name(app) {
        Ok(())
    } else {
        Err(ScalingoError::invalid_app_name(app))
    }
}

/// Operation ids are opaque; they are path-encoded, but must still be one real segment.
pub(crate) fn check_operation_id(id: &str) -> Result<(), ScalingoError> {
    check_id("operation", id)
}

/// An opaque id (operation, autoscaler ...) that goes into a path: it is
/// path-encoded, but must still be one real segment.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), ScalingoError> {
    if id.is_empty() || id == "." || id == ".." || id.len() > 200 {
        return Err(ScalingoError::Decode(format!(
            "invalid {what} id {:?}",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// An API base must be http(s), with a host, a path we can append to, and no credentials.
pub(crate) fn check_base_url(what: &str, url: &Url) -> Result<(), ScalingoError> {
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || url.cannot_be_a_base()
    {
        return Err(ScalingoError::Config(format!(
            "{what} must be an http(s) URL with a host, got {url}"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ScalingoError::Config(format!(
            "{what} must not carry credentials"
        )));
    }
    Ok(())
}

/// `base` + path segments, each percent-encoded (query and fragment dropped).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Result<Url, ScalingoError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| ScalingoError::Config(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `{api}/v1/apps/{app}/{tail...}`, the name validated first.
pub(crate) fn app_url(api: &Url, app: &str, tail: &[&str]) -> Result<Url, ScalingoError> {
    check_app(app)?;
    let mut segments = vec!["v1", "apps", app];
    segments.extend_from_slice(tail);
    join(api, &segments)
}

/// The operation id of a scale's `Location`
/// (`https://api.<region>.scalingo.com/v1/apps/{app}/operations/{id}`).
///
/// The Location must be on the region's API scheme, host and port: the id is
/// then polled through our own URL, and the bearer never leaves for a host
/// the answer chose. A relative Location is resolved against the API base.
pub(crate) fn operation_id_from_location(
    location: &str,
    api: &Url,
) -> Result<String, ScalingoError> {
    let shown = || location.chars().take(200).collect::<String>();
    let url = api
        .join(location)
        .map_err(|_| ScalingoError::UntrustedLocation(shown()))?;
    let same_origin = url.scheme() == api.scheme()
        && url.host_str() == api.host_str()
        && url.port_or_known_default() == api.port_or_known_default();
    if !same_origin {
        tracing::warn!(location = %shown(), api = %api, "scale Location is not on the region's API host");
        return Err(ScalingoError::UntrustedLocation(shown()));
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let id = match segments.as_slice() {
        [.., "v1", "apps", app, "operations", id] if !app.is_empty() => *id,
        _ => {
            return Err(ScalingoError::Decode(format!(
                "Location is not an operation URL: {}",
                shown()
            )))
        }
    };
    let id = percent_decode_str(id).decode_utf8_lossy().into_owned();
    check_operation_id(&id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Url {
        Url::parse("https://api.osc-fr1.scalingo.com").unwrap()
    }

    #[test]
    fn location_gives_the_operation_id() {
        assert_eq!(
            operation_id_from_location(
                "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/op-123",
                &api()
            )
            .unwrap(),
            "op-123"
        );
        // Explicit default port, relative Location, encoded id.
        assert_eq!(
            operation_id_from_location(
                "https://API.osc-fr1.scalingo.com:443/v1/apps/my-app/operations/a%20b",
                &api()
            )
            .unwrap(),
            "a b"
        );
        assert_eq!(
            operation_id_from_location("/v1/apps/my-app/operations/op-9", &api()).unwrap(),
            "op-9"
        );
        // A base URL with a path (as a fake may serve regions under a prefix).
        let prefixed = Url::parse("http://127.0.0.1:8080/osc-fr1").unwrap();
        assert_eq!(
            operation_id_from_location(
                "http://127.0.0.1:8080/osc-fr1/v1/apps/my-app/operations/x",
                &prefixed
            )
            .unwrap(),
            "x"
        );
    }

    #[test]
    fn location_on_another_origin_is_untrusted() {
        for location in [
            "https://evil.example.com/v1/apps/my-app/operations/op-1",
            "https://api.osc-secnum-fr1.scalingo.com/v1/apps/my-app/operations/op-1",
            "http://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/op-1",
            "https://api.osc-fr1.scalingo.com:8443/v1/apps/my-app/operations/op-1",
            "//evil.example.com/v1/apps/my-app/operations/op-1",
        ] {
            assert!(
                matches!(
                    operation_id_from_location(location, &api()),
                    Err(ScalingoError::UntrustedLocation(_))
                ),
                "{location}"
            );
        }
        let local = Url::parse("http://127.0.0.1:8080").unwrap();
        assert!(matches!(
            operation_id_from_location("http://127.0.0.1:8081/v1/apps/my-app/operations/1", &local),
            Err(ScalingoError::UntrustedLocation(_))
        ));
    }

    #[test]
    fn location_with_another_path_is_refused() {
        for location in [
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app",
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/",
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/deployments/1",
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/%2E%2E",
        ] {
            assert!(
                matches!(
                    operation_id_from_location(location, &api()),
                    Err(ScalingoError::Decode(_))
                ),
                "{location}"
            );
        }
    }

    #[test]
    fn join_encodes_and_keeps_base_path() {
        let base = Url::parse("http://127.0.0.1:9/prefix/?q=1").unwrap();
        assert_eq!(
            join(&base, &["v1", "apps", "a/b c"]).unwrap().as_str(),
            "http://127.0.0.1:9/prefix/v1/apps/a%2Fb%20c"
        );
        assert_eq!(
            join(&api(), &["v1", "regions"]).unwrap().as_str(),
            "https://api.osc-fr1.scalingo.com/v1/regions"
        );
    }

    #[test]
    fn app_urls_refuse_invalid_names() {
        assert_eq!(
            app_url(&api(), "my-app", &["operations", "a/b"])
                .unwrap()
                .as_str(),
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/a%2Fb"
        );
        assert!(matches!(
            app_url(&api(), "../etc", &[]),
            Err(ScalingoError::InvalidAppName(_))
        ));
    }
}
