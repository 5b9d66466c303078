//! The default config.json that `rbox-runc spec` writes: runc's defaults, field for field
//! and in runc's layout (with our hostname), so tools and tutorials written for runc work.

use oci_spec::runtime::Spec;

/// The example spec, as `spec` writes it.
pub const EXAMPLE: &str = include_str!("example.json");

/// The example spec.
pub fn example_spec() -> Spec {
    serde_json::from_str(EXAMPLE).expect("the example spec parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_valid_and_runnable_as_is() {
        let spec = example_spec();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("rootfs")).unwrap();
        let cfg = crate::oci::config::ContainerConfig::new(spec, tmp.path()).unwrap();
        assert!(cfg.root_readonly);
        assert_eq!(cfg.mounts.len(), 7);
        assert!(cfg.process.terminal);
        assert!(EXAMPLE.starts_with("{\n\t\"ociVersion\""));
    }
}
