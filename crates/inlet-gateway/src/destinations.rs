//! Runs one delivery task per configured destination beside the HTTP server and the lake
//! writer, each reading the WAL through its own cursor.

use std::sync::Arc;

use inlet_destinations::{DeadLetterStore, Delivery, DeliveryParts, Destination, DestinationMetricFamilies};
use inlet_lake::LakeStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::StartupError;
use crate::lake::lake_settings;
use crate::state::AppState;

/// The running destinations.
#[derive(Debug)]
pub struct DestinationTasks {
    shutdown: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<()>)>,
}

/// Starts a delivery task per destination.
pub async fn start(state: &Arc<AppState>) -> Result<DestinationTasks, StartupError> {
    let (shutdown, receiver) = watch::channel(false);
    let mut tasks = Vec::new();
    if state.config.destinations.is_empty() {
        return Ok(DestinationTasks { shutdown, tasks });
    }
    let lake = lake_settings(&state.config)?;
    let store = LakeStore::open(lake.location.clone(), &lake.s3)?;
    let families = DestinationMetricFamilies::register(state.metrics.registry());
    for config in &state.config.destinations {
        let destination = Destination::new(config.clone());
        let metrics = families.for_destination(&config.name);
        let status =
            Arc::clone(state.destination_status(&config.name).expect("AppState::open made a status per destination"));
        let delivery = Delivery::open(DeliveryParts {
            name: config.name.clone(),
            sources: config.sources.clone(),
            outbox: destination.outbox(metrics.clone(), Arc::clone(&status)),
            wal: Arc::clone(&state.wal),
            dead_letters: DeadLetterStore::new(store.clone(), &config.name, &lake.instance_id),
            metrics,
            status: Arc::clone(&status),
            state_dir: state.config.data_dir.join("destinations"),
            max_in_flight: config.delivery.max_in_flight_events,
            max_backlog_bytes: config.delivery.max_backlog_bytes,
            suppressions: Arc::clone(&state.suppressions),
        })
        .await
        .map_err(|source| StartupError::Destination { name: config.name.clone(), source })?;
        let receiver = receiver.clone();
        let name = config.name.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = delivery.run(receiver).await {
                // Events stay in the WAL; readiness fails so the instance gets restarted.
                tracing::error!(destination = %name, %error, "destination stopped; its events stay in the WAL");
                let _ = status.failed.set(error.to_string());
            }
        });
        tasks.push((config.name.clone(), task));
    }
    Ok(DestinationTasks { shutdown, tasks })
}

impl DestinationTasks {
    /// Stops every destination; events not yet delivered stay in the WAL for the next start.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for (name, task) in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(destination = %name, %error, "destination task panicked");
            }
        }
    }
}
