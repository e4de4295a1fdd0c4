//! Ids for built-in objects (system environments, instance type groups) that
//! are not stored anywhere: derived from what they are, so that they are the
//! same on every server and after every restart.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A UUID (version 8, "custom") from the SHA-256 of `kind` and `name`.
pub fn stable_id(kind: &str, name: &str) -> Uuid {
    let digest = Sha256::digest(format!("ubiops-server {kind} {name}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_gives_the_same_id_and_kinds_do_not_collide() {
        let id = stable_id("environment", "python3-8");
        assert_eq!(id, stable_id("environment", "python3-8"));
        assert_ne!(id, stable_id("environment", "python3-9"));
        assert_ne!(id, stable_id("instance type group", "python3-8"));
        assert_eq!(id.get_version_num(), 8);
    }
}
