//! Which keys the stored secrets need, so that a server can refuse to start
//! without them instead of failing on every secret afterwards.

use crate::{Result, Store};

impl Store {
    /// The ids of the keys that sealed the stored secret values (none when no
    /// secret is stored).
    pub async fn sealing_key_ids(&self) -> Result<Vec<String>> {
        let ids = sqlx::query_scalar!(
            r#"SELECT DISTINCT key_id AS "key_id!" FROM environment_variables
               WHERE key_id IS NOT NULL ORDER BY 1"#
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(ids)
    }
}
