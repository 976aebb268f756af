//! The kill switch: a file per suspended agent, readable and writable by any process sharing the directory.

use std::path::PathBuf;

use actp_core::Address;
use serde::{Deserialize, Serialize};

use super::{BudgetError, LedgerError, unix_now};

/// The kill switch: one file per suspended agent under `<dir>/suspended/`. Any process sharing the data
/// directory can throw it or read it without opening the ledger.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Suspension {
    reason: Option<String>,
    at: u64,
}

impl KillSwitch {
    /// The kill switch of the ledger directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KillSwitch {
            dir: dir.into().join("suspended"),
        }
    }

    fn file(&self, agent: Address) -> PathBuf {
        self.dir.join(format!("{agent:#x}"))
    }

    /// Stops every new payment of `agent`, in every process sharing the directory, until resumed.
    pub fn suspend(&self, agent: Address, reason: Option<&str>) -> Result<(), LedgerError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| LedgerError::Storage(e.to_string()))?;
        let body = serde_json::to_vec(&Suspension {
            reason: reason.map(str::to_owned),
            at: unix_now(),
        })
        .map_err(|e| LedgerError::Storage(e.to_string()))?;
        // Written whole, then renamed into place: a reader sees the switch complete or not at all.
        let tmp = self.dir.join(format!(".{agent:#x}.{}", std::process::id()));
        std::fs::write(&tmp, body).map_err(|e| LedgerError::Storage(e.to_string()))?;
        std::fs::rename(&tmp, self.file(agent)).map_err(|e| LedgerError::Storage(e.to_string()))
    }

    /// Lets `agent` pay again. Resuming an agent that is not suspended is not an error.
    pub fn resume(&self, agent: Address) -> Result<(), LedgerError> {
        match std::fs::remove_file(self.file(agent)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LedgerError::Storage(e.to_string())),
        }
    }

    /// `Some(reason)` while `agent` is suspended.
    pub fn suspended(&self, agent: Address) -> Option<Option<String>> {
        let bytes = std::fs::read(self.file(agent)).ok()?;
        Some(
            serde_json::from_slice::<Suspension>(&bytes)
                .ok()
                .and_then(|s| s.reason),
        )
    }

    /// Refuses with [`BudgetError::Suspended`] while `agent` is suspended.
    pub fn check(&self, agent: Address) -> Result<(), BudgetError> {
        match self.suspended(agent) {
            Some(reason) => Err(BudgetError::Suspended { agent, reason }),
            None => Ok(()),
        }
    }
}
