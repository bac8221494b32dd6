//! Per-run networks.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;

use super::error::status_of;
use super::{Engine, EngineError};

impl Engine {
    /// Creates a user-defined bridge network (containers reach each other by alias).
    pub async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<String, EngineError> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        let response = self
            .docker
            .create_network(request)
            .await
            .map_err(|e| EngineError::api(format!("create network {name}"), e))?;
        Ok(response.id)
    }

    /// Removes a network; gone already is fine.
    pub async fn remove_network(&self, name_or_id: &str) -> Result<(), EngineError> {
        match self.docker.remove_network(name_or_id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove network {name_or_id}"), e)),
        }
    }
}
