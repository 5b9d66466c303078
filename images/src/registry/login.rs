//! Checking credentials the way `docker login` does: ask `/v2/`, then answer its
//! challenge (basic auth, or a bearer token from the realm it names).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

use super::{Credentials, RegistryError};
use crate::error::Result;

pub(super) async fn check(registry: &str, creds: &Credentials, insecure: bool) -> Result<()> {
    let host = if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    };
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| unreachable_err(registry, e))?;
    let schemes: &[&str] = if insecure {
        &["https", "http"]
    } else {
        &["https"]
    };
    let mut last = None;
    for scheme in schemes {
        let url = format!("{scheme}://{host}/v2/");
        match http.get(&url).send().await {
            Ok(resp) => return answer(&http, registry, &url, resp, creds).await,
            Err(e) => last = Some(unreachable_err(registry, e)),
        }
    }
    Err(last.expect("at least one scheme").into())
}

fn unreachable_err(registry: &str, e: reqwest::Error) -> RegistryError {
    RegistryError::Unreachable {
        registry: registry.to_string(),
        detail: e.to_string(),
    }
}

fn failed(registry: &str, detail: impl Into<String>) -> RegistryError {
    RegistryError::LoginFailed {
        registry: registry.to_string(),
        detail: detail.into(),
    }
}

async fn answer(
    http: &reqwest::Client,
    registry: &str,
    url: &str,
    resp: reqwest::Response,
    creds: &Credentials,
) -> Result<()> {
    if resp.status().is_success() {
        return Ok(()); // the registry needs no credentials
    }
    if resp.status() != StatusCode::UNAUTHORIZED {
        return Err(failed(registry, format!("{url} answered {}", resp.status())).into());
    }
    let header = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut realm = None;
    let mut service = None;
    let mut basic = false;
    for challenge in http_auth::ChallengeParser::new(&header).flatten() {
        if challenge.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        } else if challenge.scheme.eq_ignore_ascii_case("bearer") {
            for (k, v) in &challenge.params {
                match k.to_ascii_lowercase().as_str() {
                    "realm" => realm = Some(v.to_unescaped()),
                    "service" => service = Some(v.to_unescaped()),
                    _ => {}
                }
            }
        }
    }
    let request = if let Some(realm) = realm {
        let mut query = vec![("account", creds.username.clone())];
        query.extend(service.map(|s| ("service", s)));
        http.get(&realm).query(&query)
    } else if basic {
        http.get(url)
    } else {
        return Err(failed(
            registry,
            format!("unsupported authentication challenge {header:?}"),
        )
        .into());
    };
    let resp = request
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(|e| unreachable_err(registry, e))?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(failed(registry, "incorrect username or password").into())
        }
        s => Err(failed(registry, format!("the registry answered {s}")).into()),
    }
}
