//! Containers made ahead of their start: created (rootfs, namespace, address, `runc create`)
//! while another release still serves, started later in one step.

use crate::error::RuntimeError;
use crate::state::{Record, RecordPhase};
use crate::Runtime;

use super::{check_id, ContainerInfo, ContainerSpec};

impl Runtime {
    /// Like [`Runtime::start`] but stops short of `runc start`: the container is created
    /// (rootfs, namespace, address, `runc create`), its process waits and no code of the
    /// image runs. [`Runtime::start_created`] starts it; [`Runtime::discard`] drops it.
    pub async fn create(&self, spec: ContainerSpec<'_>) -> Result<ContainerInfo, RuntimeError> {
        self.make(spec, false).await
    }

    /// Starts container `id` that [`Runtime::create`] made (waiting for a create still in
    /// progress). Refuses one that is not created, or has run; a failed start tears it down.
    pub async fn start_created(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        check_id(id)?;
        let lock = self.shared.lock(id);
        let _guard = lock.lock().await;
        let dir = self.dir(id);
        let mut rec = match Record::load(&dir)? {
            Some(r) if r.phase == RecordPhase::Created && r.started_at.is_none() => r,
            other => {
                return Err(RuntimeError::NotCreated {
                    id: id.to_string(),
                    phase: other.map_or_else(|| "none".to_string(), |r| format!("{:?}", r.phase)),
                })
            }
        };
        let started = self.run_created(&dir, &mut rec).await;
        self.or_tear_down(started, &dir, &mut rec).await
    }
}
