//! Named volumes (the pipeline caches of `cache:`).

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;

use super::{Engine, EngineError};

impl Engine {
    /// Creates the named volume with `labels`, or leaves an existing one of
    /// that name as it is (the engine answers with the existing volume).
    pub async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        self.quick
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| EngineError::api(format!("create volume {name}"), e))
    }
}
