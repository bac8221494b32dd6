//! Networks: per-run networks and the long-lived networks of deploys.

use std::collections::HashMap;

use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::InspectNetworkOptions;

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
        match self.quick.remove_network(name_or_id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove network {name_or_id}"), e)),
        }
    }

    /// Whether a network with this name or id exists.
    pub async fn network_exists(&self, name_or_id: &str) -> Result<bool, EngineError> {
        match self
            .docker
            .inspect_network(name_or_id, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(EngineError::api(format!("inspect network {name_or_id}"), e)),
        }
    }

    /// Attaches a container to a network, answering to `aliases` there.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<(), EngineError> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.quick
            .connect_network(network, request)
            .await
            .map_err(|e| EngineError::api(format!("connect {container} to network {network}"), e))
    }

    /// Detaches a container from a network; not attached or gone is fine.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
    ) -> Result<(), EngineError> {
        let request = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        match self.quick.disconnect_network(network, request).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404)) => Ok(()),
            Err(e) => Err(EngineError::api(
                format!("disconnect {container} from network {network}"),
                e,
            )),
        }
    }
}
