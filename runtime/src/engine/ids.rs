//! Container ids and names: 64 lowercase hex ids (12 in short form), Docker's name rules,
//! and generated names for containers started without `--name`.

/// Length of an id in short form, as `ps` shows it.
pub const SHORT_ID_LEN: usize = 12;

/// A fresh random container id: 64 lowercase hex digits that never look like a number
/// (Docker avoids all-digit short ids, which some tools would parse as integers).
pub fn new_id() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..SHORT_ID_LEN].bytes().all(|c| c.is_ascii_digit()) {
            return id;
        }
    }
}

/// The short form of an id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(SHORT_ID_LEN)]
}

/// True for a full 64-hex-digit id.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a container name against Docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.len() >= 2 && first_ok && rest_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ (2 to 128 characters) are allowed"
        ))
    }
}

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring",
    "eager", "fancy", "fierce", "gentle", "glad", "golden", "happy", "humble", "jolly", "keen",
    "kind", "lively", "lucid", "mellow", "merry", "misty", "nimble", "noble", "patient", "placid",
    "proud", "quiet", "rapid", "serene", "sharp", "shiny", "silent", "sleepy", "smooth", "steady",
    "stoic", "sunny", "swift", "tender", "tidy", "vivid", "warm", "wise", "witty", "zealous",
];

const NOUNS: &[&str] = &[
    "albatross",
    "badger",
    "beaver",
    "bison",
    "condor",
    "coyote",
    "crane",
    "dolphin",
    "falcon",
    "ferret",
    "finch",
    "gecko",
    "heron",
    "ibex",
    "jackal",
    "kestrel",
    "koala",
    "lemur",
    "lynx",
    "marten",
    "moose",
    "narwhal",
    "ocelot",
    "orca",
    "osprey",
    "otter",
    "panda",
    "pelican",
    "penguin",
    "puffin",
    "quokka",
    "raven",
    "robin",
    "salmon",
    "seal",
    "shrike",
    "sparrow",
    "stoat",
    "swift",
    "tapir",
    "tern",
    "toucan",
    "turtle",
    "vole",
    "walrus",
    "weasel",
    "wombat",
    "wren",
    "yak",
    "zebra",
];

/// A random `adjective_animal` name for a container started without `--name`.
pub fn random_name() -> String {
    let [a, b]: [u16; 2] = rand::random();
    format!(
        "{}_{}",
        ADJECTIVES[a as usize % ADJECTIVES.len()],
        NOUNS[b as usize % NOUNS.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_short_is_12() {
        let id = new_id();
        assert!(is_full_id(&id), "{id}");
        assert_eq!(short(&id).len(), 12);
        assert_ne!(new_id(), id);
    }

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("mybox").is_ok());
        assert!(validate_name("my_box.1-a").is_ok());
        assert!(validate_name("/mybox").is_ok());
        assert!(validate_name("a").is_err());
        assert!(validate_name("-box").is_err());
        assert!(validate_name("my box").is_err());
        assert!(validate_name("bad/name").is_err());
        assert!(validate_name(&random_name()).is_ok());
    }
}
