//! Where output goes: results on stdout (one JSON document per result with `--json`), progress on stderr
//! (silenced by `-q` and `--json`), errors on stderr as one line (a JSON object with `--json`).

use std::io::Write as _;

use serde::Serialize;

use crate::error::CliError;

/// How to print.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

impl Output {
    /// A result: `value` as one JSON line with `--json`, else the `human` text.
    pub(crate) fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            // Every address EIP-55 checksummed, whatever type it came from: web3.py refuses lowercase.
            let mut json = serde_json::to_value(value).unwrap_or_default();
            actp_core::checksum::checksum_addresses(&mut json);
            let line = json.to_string();
            let _ = writeln!(stdout, "{line}");
        } else {
            let text = human();
            if !text.is_empty() {
                let _ = writeln!(stdout, "{}", text.trim_end());
            }
        }
        let _ = stdout.flush();
    }

    /// Progress for people (stderr), unless `-q` or `--json`.
    pub(crate) fn info(&self, text: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// An error, as the last thing the command prints.
    pub(crate) fn error(&self, e: &CliError) {
        let mut stderr = std::io::stderr().lock();
        if self.json {
            let body = serde_json::json!({
                "error": {
                    "kind": e.exit,
                    "exit_code": e.exit as u8,
                    "message": e.message,
                    "kernel_error": e.kernel_error,
                }
            });
            let _ = writeln!(stderr, "{body}");
        } else {
            let _ = writeln!(stderr, "error: {}", e.message.replace('\n', " "));
        }
    }
}
