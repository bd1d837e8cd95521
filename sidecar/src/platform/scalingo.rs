//! [`Platform`] over the Scalingo API: each method delegates to the
//! [`ScalingoClient`] method of the same name (caches, retries and polling
//! stay the client's).

use async_trait::async_trait;
use tokio::time::Instant;

use super::{ListedApp, Platform};
use crate::scalingo::{
    ContainerAmount, ContainerType, ScaleOutcome, ScalingoClient, ScalingoError,
};

#[async_trait]
impl Platform for ScalingoClient {
    async fn regions(&self) -> Result<Vec<String>, ScalingoError> {
        Ok(ScalingoClient::regions(self)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect())
    }

    async fn list_apps(&self, region: &str) -> Result<Vec<ListedApp>, ScalingoError> {
        Ok(ScalingoClient::list_apps(self, region)
            .await?
            .into_iter()
            .map(|a| ListedApp {
                name: a.name,
                status: a.status,
            })
            .collect())
    }

    async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        ScalingoClient::locate(self, app).await
    }

    async fn formation(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        ScalingoClient::formation(self, region, app).await
    }

    async fn scale(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
    ) -> Result<ScaleOutcome, ScalingoError> {
        ScalingoClient::scale(self, region, app, changes).await
    }

    async fn wait_operation(
        &self,
        region: &str,
        app: &str,
        operation_id: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError> {
        ScalingoClient::wait_operation(self, region, app, operation_id, deadline)
            .await
            .map(|_| ())
    }

    async fn wait_web_running(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError> {
        ScalingoClient::wait_web_running(self, region, app, deadline).await
    }
}
