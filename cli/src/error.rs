//! Errors of the `actp` command and the exit code each maps to.

use std::process::ExitCode;

use actp_client::ClientError;
use actp_core::Rejection;

/// The documented exit codes. `actp --help` lists them; README repeats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Exit {
    /// 1: anything else (storage, I/O, a devnet that would not start, a proof that does not check out).
    Failure = 1,
    /// 2: the command line, configuration or input is wrong.
    Usage = 2,
    /// 3: the kernel (or its token) refused the operation.
    Rejected = 3,
    /// 4: the RPC endpoint or a provider could not be reached.
    Network = 4,
    /// 5: waited too long (a receipt, a state).
    Timeout = 5,
    /// 6: the transaction, file or devnet asked for does not exist.
    NotFound = 6,
    Budget = 7,
}

/// The exit-code table printed after `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (storage, I/O, a proof that does not check out)
  2  usage: bad arguments, configuration or input
  3  rejected by the kernel or its token (the decoded error is printed)
  4  network: the RPC endpoint or the provider could not be reached, its TLS certificate was not trusted
     (see --ca-cert), or the network's fees are above --max-fee-per-gas
  5  timeout: no receipt (or state) in time; check before retrying
  6  not found: no such transaction, file or devnet
  7  refused by the spend policy: a cap is reached, the provider is not allowed, or the agent is suspended";

/// An error of a command: one line saying what went wrong and what to do.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) message: String,
    /// The kernel's custom error name, when the kernel refused.
    pub(crate) kernel_error: Option<String>,
    /// Whether waiting and trying again may help (an unreachable RPC, a rate limit), as opposed to a
    /// problem of configuration (an untrusted certificate) or input.
    pub(crate) retryable: bool,
}

pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            kernel_error: None,
            retryable: false,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self::new(Exit::Failure, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(Exit::NotFound, message)
    }

    pub(crate) fn network(message: impl Into<String>) -> Self {
        Self::new(Exit::Network, message)
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Self::new(Exit::Timeout, message)
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit as u8)
    }

    /// The same error with context in front.
    pub(crate) fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The name of a kernel custom error, e.g. `InvalidTransition`.
fn rejection_name(r: &Rejection) -> String {
    let debug = format!("{r:?}");
    debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let message = e.to_string();
        let retryable = e.is_retryable();
        let mut error = match &e {
            ClientError::Rejected(Rejection::TransactionNotFound(_)) => {
                CliError::not_found(message)
            }
            ClientError::Rejected(r) => CliError {
                exit: Exit::Rejected,
                kernel_error: Some(rejection_name(r)),
                message,
                retryable: false,
            },
            ClientError::Token(_)
            | ClientError::UnknownRevert { .. }
            | ClientError::RevertedOnChain { .. } => CliError::new(Exit::Rejected, message),
            ClientError::Rpc { .. } | ClientError::LogRangeTooLarge { .. } => {
                CliError::network(format!(
                    "{message} (check --rpc-url / ACTP_RPC_URL, or that `actp devnet` is running)"
                ))
            }
            ClientError::Tls { .. } | ClientError::FeeCapExceeded { .. } => {
                CliError::network(message)
            }
            ClientError::UnsupportedToken { .. } => CliError::usage(message),
            ClientError::UnknownState { .. } => CliError::failure(message),
            ClientError::ReceiptTimeout { .. } => CliError::timeout(message),
            ClientError::Signer(_) | ClientError::Config(_) => CliError::usage(message),
            ClientError::Devnet(_) => CliError::failure(message),
        };
        error.retryable = retryable;
        error
    }
}

impl From<actp_settler::SettlerError> for CliError {
    fn from(e: actp_settler::SettlerError) -> Self {
        match e {
            actp_settler::SettlerError::Client(c) => c.into(),
            actp_settler::SettlerError::NoSigner => CliError::usage(e.to_string()),
            actp_settler::SettlerError::Store(s) => s.into(),
        }
    }
}

impl From<actp_store::StoreError> for CliError {
    fn from(e: actp_store::StoreError) -> Self {
        use actp_store::StoreError;
        match e {
            StoreError::Url(_)
            | StoreError::WrongOwner { .. }
            | StoreError::SchemaTooNew { .. } => CliError::usage(e.to_string()),
            StoreError::Pool(_) => CliError::network(e.to_string()),
            other => CliError::failure(other.to_string()),
        }
    }
}

impl From<actp_axum::PaywallError> for CliError {
    fn from(e: actp_axum::PaywallError) -> Self {
        use actp_axum::PaywallError;
        let message = e.to_string();
        match e {
            PaywallError::Route(_) | PaywallError::NoSigner | PaywallError::DurabilityOfShared => {
                CliError::usage(message)
            }
            // The store's own kind decides the code: an unreachable PostgreSQL server is a network failure,
            // a bad URL or a store of another kernel a usage error.
            PaywallError::Store(actp_axum::StoreError::Store(store)) => CliError {
                message,
                ..CliError::from(store)
            },
            PaywallError::Store(_) => CliError::failure(message),
        }
    }
}

impl From<actp_pay::LedgerError> for CliError {
    fn from(e: actp_pay::LedgerError) -> Self {
        match e {
            actp_pay::LedgerError::InvalidKey(_) | actp_pay::LedgerError::InvalidPolicy(_) => {
                CliError::usage(e.to_string())
            }
            actp_pay::LedgerError::Store(store) => store.into(),
            other => CliError::failure(other.to_string()),
        }
    }
}

impl From<actp_pay::PayError> for CliError {
    fn from(e: actp_pay::PayError) -> Self {
        use actp_pay::PayError::*;
        match e {
            Budget(_) => CliError::new(Exit::Budget, e.to_string()),
            Ledger(l) => l.into(),
            Chain(c) => c.into(),
            Unreachable { .. } | ProviderFailed { .. } => CliError::network(e.to_string()),
            Unconfirmed { .. } => CliError::timeout(e.to_string()),
            WrongKernel { .. } | AlreadyServed { .. } => CliError::usage(e.to_string()),
            BadInstructions { .. }
            | Refused { .. }
            | DeliveryMismatch { .. }
            | BadReceipt { .. }
            | SessionRefused { .. } => CliError::failure(e.to_string()),
        }
    }
}
