//! Platforms (`linux/amd64`, `linux/arm64/v8`) and the choice of one manifest from a
//! multi-platform index.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    Malformed(String),
    #[error("no manifest for platform {wanted} in the image index (it has: {available})")]
    NoMatch { wanted: Platform, available: String },
}

/// An OS, architecture and optional variant, with Go's (and OCI's) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty());
        if !ok {
            return Err(PlatformError::Malformed(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The variant an entry without one stands for (arm64 means v8).
    fn effective_variant(architecture: &str, variant: Option<&str>) -> Option<String> {
        match (architecture, variant) {
            (_, Some(v)) if !v.is_empty() => Some(v.to_string()),
            ("arm64", _) => Some("v8".into()),
            _ => None,
        }
    }

    fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                Self::effective_variant(architecture, variant).as_deref() == Some(want)
                    // An entry that names no variant runs on any variant.
                    || variant.is_none_or(str::is_empty)
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `wanted` from an index: an exact variant beats an entry that
/// names none; entries without a platform (e.g. attestations) are never picked.
pub fn select(
    index: &oci_spec::image::ImageIndex,
    wanted: &Platform,
) -> Result<oci_spec::image::Descriptor, PlatformError> {
    let mut best: Option<(&oci_spec::image::Descriptor, bool)> = None;
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        let variant = p.variant().as_deref();
        if !wanted.matches(&os, &arch, variant) {
            continue;
        }
        let exact = Platform::effective_variant(&arch, variant) == wanted.variant;
        if best.is_none_or(|(_, was_exact)| exact && !was_exact) {
            best = Some((m, exact));
        }
    }
    best.map(|(m, _)| m.clone()).ok_or_else(|| {
        let available: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|m| m.platform().as_ref())
            .map(|p| {
                let mut s = format!("{}/{}", p.os(), p.architecture());
                if let Some(v) = p.variant() {
                    s.push('/');
                    s.push_str(v);
                }
                s
            })
            .collect();
        PlatformError::NoMatch {
            wanted: wanted.clone(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> oci_spec::image::ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i + 1),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn pick(idx: &oci_spec::image::ImageIndex, p: &str) -> Result<u64, PlatformError> {
        select(idx, &Platform::parse(p).unwrap())
            .map(|d| u64::from_str_radix(&d.digest().digest()[48..], 16).unwrap())
    }

    #[test]
    fn selects_the_wanted_platform() {
        let idx = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("windows", "amd64", None),
            ("unknown", "unknown", None),
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), Ok(4));
        assert_eq!(pick(&idx, "linux/arm64"), Ok(3));
        assert_eq!(pick(&idx, "linux/arm64/v8"), Ok(3));
        assert_eq!(pick(&idx, "linux/arm/v7"), Ok(2));
        assert_eq!(pick(&idx, "linux/arm/v6"), Ok(1));
        assert_eq!(pick(&idx, "windows/amd64"), Ok(5));
        let err = pick(&idx, "linux/s390x").unwrap_err();
        assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
    }

    #[test]
    fn arm64_without_variant_is_v8_and_exact_variant_wins() {
        let idx = index(&[("linux", "arm64", None)]);
        assert_eq!(pick(&idx, "linux/arm64/v8"), Ok(1));
        let idx = index(&[("linux", "arm", None), ("linux", "arm", Some("v7"))]);
        assert_eq!(pick(&idx, "linux/arm/v7"), Ok(2));
    }

    #[test]
    fn host_platform_is_chosen_by_default() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        let idx = index(&[
            ("linux", "riscv64", None),
            ("linux", &host.architecture, host.variant.as_deref()),
        ]);
        assert_eq!(select(&idx, &host).unwrap().digest().digest()[63..], *"2");
    }

    #[test]
    fn parse_refuses_malformed() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
    }
}
