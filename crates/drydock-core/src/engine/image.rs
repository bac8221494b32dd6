//! Images: inspect, find by label, tag, remove, import a root filesystem.

use std::collections::HashMap;

use bollard::query_parameters::{
    CreateImageOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::error::status_of;
use super::{Engine, EngineError};

/// What drydock needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Full image id (`sha256:…`).
    pub id: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Image labels.
    pub labels: HashMap<String, String>,
    /// The user the image runs as (empty = root).
    pub user: String,
    /// Creation time (RFC 3339).
    pub created: String,
    /// The image's ENTRYPOINT (empty when none).
    pub entrypoint: Vec<String>,
    /// The image's CMD (empty when none).
    pub cmd: Vec<String>,
    /// Its `ONBUILD` triggers: instructions that run in every build
    /// `FROM` it (they may read any part of that build's context).
    pub on_build: Vec<String>,
}

impl Engine {
    /// Inspects an image; `Ok(None)` when it does not exist.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.quick.inspect_image(reference).await {
            Ok(image) => {
                let config = image.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    id: image.id.unwrap_or_default(),
                    tags: image.repo_tags.unwrap_or_default(),
                    labels: config.labels.unwrap_or_default(),
                    user: config.user.unwrap_or_default(),
                    entrypoint: config.entrypoint.unwrap_or_default(),
                    cmd: config.cmd.unwrap_or_default(),
                    on_build: config.on_build.unwrap_or_default(),
                    created: image
                        .created
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                        .unwrap_or_default(),
                }))
            }
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspect image {reference}"), e)),
        }
    }

    /// The image's `HEALTHCHECK` test (e.g. `["CMD", "python", "/app/healthcheck.py"]`);
    /// `None` when it has none (or `HEALTHCHECK NONE`). A missing image is
    /// [`EngineError::ImageMissing`].
    pub async fn image_healthcheck(
        &self,
        reference: &str,
    ) -> Result<Option<Vec<String>>, EngineError> {
        match self.quick.inspect_image(reference).await {
            Ok(image) => Ok(image
                .config
                .and_then(|c| c.healthcheck)
                .and_then(|h| h.test)
                .filter(|t| !t.is_empty() && t[0] != "NONE")),
            Err(e) if status_of(&e) == Some(404) => Err(EngineError::ImageMissing {
                image: reference.to_string(),
                hint: String::new(),
            }),
            Err(e) => Err(EngineError::api(format!("inspect image {reference}"), e)),
        }
    }

    /// Image ids carrying the label `key=value`, newest first.
    pub async fn images_with_label(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, EngineError> {
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{key}={value}")],
            )])),
            ..Default::default()
        };
        let mut images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| EngineError::api(format!("list images labelled {key}={value}"), e))?;
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(images.into_iter().map(|i| i.id).collect())
    }

    /// Images carrying `label` (`key` or `key=value`): (id, tags), newest first.
    pub async fn images_labelled(
        &self,
        label: &str,
    ) -> Result<Vec<(String, Vec<String>)>, EngineError> {
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string()],
            )])),
            ..Default::default()
        };
        let mut images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| EngineError::api(format!("list images labelled {label}"), e))?;
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(images
            .into_iter()
            .map(|i| {
                let tags = i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect();
                (i.id, tags)
            })
            .collect())
    }

    /// Pulls `reference` from its registry (anonymous). Errors carry the registry's message.
    pub async fn pull_image(&self, reference: &str) -> Result<(), EngineError> {
        let (repo, tag) = super::split_tag(reference);
        let options = CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| EngineError::api(format!("pull {reference}"), e))?;
        }
        Ok(())
    }

    /// Points `repo:tag` at `image` (an id or reference).
    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        let options = TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(|e| EngineError::api(format!("tag {image} as {repo}:{tag}"), e))
    }

    /// Removes a tag or image; gone already is fine.
    pub async fn remove_image(&self, reference: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveImageOptions {
            force,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove image {reference}"), e)),
        }
    }

    /// Imports a root filesystem tar stream as the image `repo:tag` (the
    /// equivalent of `docker import`, not `docker load`), applying Dockerfile
    /// `changes` such as `CMD ["bash"]`. Returns the image id.
    pub async fn import_rootfs(
        &self,
        rootfs: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        repo: &str,
        tag: &str,
        changes: &[String],
    ) -> Result<String, EngineError> {
        let options = CreateImageOptions {
            from_src: Some("-".to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            changes: changes.to_vec(),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(rootfs)), None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| EngineError::api(format!("import {repo}:{tag}"), e))?;
        }
        self.image(&format!("{repo}:{tag}"))
            .await?
            .map(|info| info.id)
            .ok_or_else(|| EngineError::ImageMissing {
                image: format!("{repo}:{tag}"),
                hint: " after import".to_string(),
            })
    }
}
