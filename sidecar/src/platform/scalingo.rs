//! [`Platform`] over the Scalingo API ([`ScalingoPlatform`]): each API
//! method delegates to the [`ScalingoClient`] method of the same name
//! (caches, retries and polling stay the client's); the front probe goes
//! to the app's own domain ([`FrontProber`]), not to the API.

use async_trait::async_trait;
use tokio::time::Instant;

use super::front::FrontProber;
use super::{AutoscalerState, FrontProbe, ListedApp, OperationState, Platform};
use crate::budget::Priority;
use crate::scalingo::{
    AppStatus, ContainerAmount, ContainerType, OperationStatus, ScaleOutcome, ScalingoClient,
    ScalingoError,
};

/// The names of the usable regions, as [`Platform::regions`] gives them
/// (for callers that have a client only, such as `check-config`).
pub async fn region_names(client: &ScalingoClient) -> Result<Vec<String>, ScalingoError> {
    Ok(client
        .regions()
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect())
}

/// Every app of `region`, as [`Platform::list_apps`] gives them.
pub async fn listed_apps(
    client: &ScalingoClient,
    region: &str,
) -> Result<Vec<ListedApp>, ScalingoError> {
    Ok(client
        .list_apps(region)
        .await?
        .into_iter()
        .map(|a| ListedApp {
            name: a.name,
            status: a.status,
        })
        .collect())
}

/// The real platform: the Scalingo API and the apps' fronts.
pub struct ScalingoPlatform {
    client: ScalingoClient,
    front: FrontProber,
}

impl ScalingoPlatform {
    pub fn new(client: ScalingoClient, front: FrontProber) -> Self {
        Self { client, front }
    }

    /// The same platform whose API calls draw from the gateway's budget at
    /// `priority` (wakes before the scheduler).
    pub fn with_priority(&self, priority: Priority) -> Self {
        Self {
            client: self.client.with_priority(priority),
            front: self.front.clone(),
        }
    }
}

#[async_trait]
impl Platform for ScalingoPlatform {
    async fn regions(&self) -> Result<Vec<String>, ScalingoError> {
        region_names(&self.client).await
    }

    async fn list_apps(&self, region: &str) -> Result<Vec<ListedApp>, ScalingoError> {
        listed_apps(&self.client, region).await
    }

    async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        ScalingoClient::locate(&self.client, app).await
    }

    fn listed_region(&self, app: &str) -> Option<String> {
        self.client.cached_region(app)
    }

    async fn formation(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        ScalingoClient::formation(&self.client, region, app).await
    }

    async fn scale(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
    ) -> Result<ScaleOutcome, ScalingoError> {
        ScalingoClient::scale(&self.client, region, app, changes).await
    }

    async fn formation_until(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        ScalingoClient::formation(&self.client.with_deadline(deadline), region, app).await
    }

    async fn scale_until(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
        deadline: Instant,
    ) -> Result<ScaleOutcome, ScalingoError> {
        ScalingoClient::scale(&self.client.with_deadline(deadline), region, app, changes).await
    }

    async fn web_running_until(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<bool, ScalingoError> {
        let processes = self.client.with_deadline(deadline).ps(region, app).await?;
        Ok(crate::scalingo::web_running(&processes))
    }

    async fn operation_state(
        &self,
        region: &str,
        app: &str,
        operation_id: &str,
    ) -> Result<OperationState, ScalingoError> {
        let op = self
            .client
            .if_budget_free()
            .operation(region, app, operation_id)
            .await?;
        Ok(match op.status {
            OperationStatus::Done => OperationState::Done,
            OperationStatus::Error => OperationState::Failed(
                op.error
                    .unwrap_or_else(|| format!("operation {operation_id} ended in error")),
            ),
            _ => OperationState::Running,
        })
    }

    async fn app_status(&self, region: &str, app: &str) -> Result<AppStatus, ScalingoError> {
        Ok(self
            .client
            .if_budget_free()
            .get_app(region, app)
            .await?
            .status)
    }

    async fn probe_front(&self, region: &str, app: &str, path: &str) -> FrontProbe {
        self.front.probe(region, app, path).await
    }

    async fn autoscalers(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<AutoscalerState>, ScalingoError> {
        Ok(self
            .client
            .list_autoscalers(region, app)
            .await?
            .into_iter()
            .map(|a| AutoscalerState {
                id: a.id,
                container_type: a.container_type,
                disabled: a.disabled,
            })
            .collect())
    }

    async fn set_autoscaler_disabled(
        &self,
        region: &str,
        app: &str,
        id: &str,
        disabled: bool,
    ) -> Result<(), ScalingoError> {
        self.client
            .set_autoscaler_disabled(region, app, id, disabled)
            .await
            .map(|_| ())
    }
}
