//! Image references with Docker's normalisation: `alpine` is
//! `docker.io/library/alpine:latest`, `host:port/repo:tag`, `repo@sha256:…`.
//!
//! The grammar is the distribution project's (`reference.go`), checked by hand:
//! the regular expression oci-spec compiles for it costs ~0.3 s per process, which
//! every `rbox` command would pay. The parsed parts are handed to oci-client as its
//! own `Reference` for pulling.

use std::fmt;

use thiserror::Error;

const DOCKER_HUB: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_MAX: usize = 255;

/// Docker's split: the part before the first `/` is a registry when it has a `.` or a
/// `:`, or is `localhost`; otherwise the whole name is a Docker Hub repository.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// host (DNS name, IPv4, or `[IPv6]`) with an optional `:port`.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = registry.starts_with('[')
        || (!host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            }));
    port_ok && host_ok
}

/// path components of `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_path(path: &str) -> bool {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            // A separator: ".", "_", "__" or one or more "-".
            let start = i;
            match b[i] {
                b'.' => i += 1,
                b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
                b'-' => {
                    while b.get(i) == Some(&b'-') {
                        i += 1;
                    }
                }
                _ => return false,
            }
            if i == start
                || !b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return false;
            }
        }
        true
    };
    !path.is_empty() && path.split('/').all(component_ok)
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// A reference that is not a valid image name.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A normalised image reference: registry, repository, and a tag and/or a digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Reference(oci_client::Reference);

impl Reference {
    /// Parses and normalises `input` the way `docker pull` does.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("an image reference is needed"));
        }
        // A bare 64-hex string is an image ID, never a repository (Docker's rule).
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "a 64-digit hexadecimal string is an image ID, not a repository name",
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((n, d)) => {
                crate::digest::Digest::parse(d).map_err(|e| err(&e.to_string()))?;
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(err(
                "invalid tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            ));
        }
        let (registry, path) = split_registry(name);
        if !valid_registry(registry) {
            return Err(err("invalid registry host"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if !valid_path(path) {
            return Err(err(
                "invalid repository name: lowercase letters and digits, separated by '.', '_', '__', '-' or '/'",
            ));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + path.len() > NAME_MAX {
            return Err(err("the name is longer than 255 characters"));
        }
        // Neither tag nor digest: Docker's default tag.
        let tag = tag
            .map(str::to_string)
            .or_else(|| digest.is_none().then(|| "latest".into()));
        let (registry, path) = (registry.to_string(), path);
        Ok(Reference(match (tag, digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(registry, path, t, d),
            (Some(t), None) => oci_client::Reference::with_tag(registry, path, t),
            (None, Some(d)) => oci_client::Reference::with_digest(registry, path, d),
            (None, None) => unreachable!("a tag is defaulted above"),
        }))
    }

    /// Registry host (and port), `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// Docker's short form of the repository: `busybox`, `user/app`, `host:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry() == DOCKER_HUB {
            let repo = self.repository();
            repo.strip_prefix(OFFICIAL_PREFIX)
                .unwrap_or(repo)
                .to_string()
        } else {
            self.name()
        }
    }

    /// `name:tag` when the reference has a tag (the form stored as an image's name).
    pub fn tagged_name(&self) -> Option<String> {
        self.tag().map(|t| format!("{}:{t}", self.name()))
    }

    /// `name@digest` when the reference has a digest.
    pub fn digested_name(&self) -> Option<String> {
        self.digest().map(|d| format!("{}@{d}", self.name()))
    }

    /// The same repository at `digest` (the tag is dropped).
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference(oci_client::Reference::with_digest(
            self.registry().to_string(),
            self.repository().to_string(),
            digest.to_string(),
        ))
    }

    /// True for registries on this machine (`localhost`, 127.0.0.0/8, `::1`): Docker
    /// talks plain HTTP to those without being told.
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_host(self.registry())
    }

    pub(crate) fn oci(&self) -> &oci_client::Reference {
        &self.0
    }
}

/// True when `registry` (host, optional `:port`) names this machine.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest() {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_normalisation_table() {
        let d = |s: &str| s.replace("@D", &format!("@{D}"));
        // (input, registry, repository, tag, has digest, normalised, familiar)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Option<&'a str>,
            bool,
            &'a str,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                "alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            (
                "alpine:3.19",
                "docker.io",
                "library/alpine",
                Some("3.19"),
                false,
                "docker.io/library/alpine:3.19",
                "alpine",
            ),
            (
                "library/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            (
                "docker.io/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            (
                "index.docker.io/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            (
                "user/app",
                "docker.io",
                "user/app",
                Some("latest"),
                false,
                "docker.io/user/app:latest",
                "user/app",
            ),
            (
                "localhost/app",
                "localhost",
                "app",
                Some("latest"),
                false,
                "localhost/app:latest",
                "localhost/app",
            ),
            (
                "localhost:5000/app:v1",
                "localhost:5000",
                "app",
                Some("v1"),
                false,
                "localhost:5000/app:v1",
                "localhost:5000/app",
            ),
            (
                "127.0.0.1:5000/busybox:latest",
                "127.0.0.1:5000",
                "busybox",
                Some("latest"),
                false,
                "127.0.0.1:5000/busybox:latest",
                "127.0.0.1:5000/busybox",
            ),
            (
                "quay.io/org/sub/app:1.0",
                "quay.io",
                "org/sub/app",
                Some("1.0"),
                false,
                "quay.io/org/sub/app:1.0",
                "quay.io/org/sub/app",
            ),
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
                false,
                "docker.io/library/test.com:5000",
                "test.com",
            ),
            (
                "alpine@D",
                "docker.io",
                "library/alpine",
                None,
                true,
                "docker.io/library/alpine@D",
                "alpine",
            ),
            (
                "alpine:3@D",
                "docker.io",
                "library/alpine",
                Some("3"),
                true,
                "docker.io/library/alpine:3@D",
                "alpine",
            ),
            (
                "host:5000/a/b@D",
                "host:5000",
                "a/b",
                None,
                true,
                "host:5000/a/b@D",
                "host:5000/a/b",
            ),
        ];
        for (input, registry, repo, tag, digest, whole, familiar) in cases {
            let input = d(input);
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), *registry, "{input}");
            assert_eq!(r.repository(), *repo, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest(), digest.then_some(D), "{input}");
            assert_eq!(r.to_string(), d(whole), "{input}");
            assert_eq!(r.familiar_name(), *familiar, "{input}");
        }
    }

    #[test]
    fn malformed_references_are_refused_with_a_reason() {
        for bad in [
            "",
            " alpine",
            "Alpine",
            "alpine:",
            ":latest",
            "alpine:tag with space",
            "alpine@sha256:abc",
            "alpine@md5:d41d8cd98f00b204e9800998ecf8427e",
            "foo//bar",
            "-foo",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a:b:c",
            "foo/Bar",
            "foo__-bar",
            "foo.",
            "host:/foo",
            "host:port/foo",
            "[::1/foo",
            "-host.com/foo",
            "alpine:-tag",
            &format!("alpine:{}", "t".repeat(129)),
        ] {
            let err = Reference::parse(bad).expect_err(bad);
            assert_eq!(err.input, bad);
            assert!(
                err.to_string().starts_with("invalid reference format"),
                "{err}"
            );
        }
    }

    #[test]
    fn loopback_registries() {
        for (r, want) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("[::1]:5000", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_loopback_host(r), want, "{r}");
        }
        assert!(
            Reference::parse("localhost:5000/x")
                .unwrap()
                .is_loopback_registry()
        );
        assert!(!Reference::parse("x").unwrap().is_loopback_registry());
    }

    #[test]
    fn derived_forms() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.tagged_name().unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(r.digested_name(), None);
        let p = r.with_digest(D);
        assert_eq!(p.to_string(), format!("docker.io/library/busybox@{D}"));
    }
}
