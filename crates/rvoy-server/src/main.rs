//! The `rvoy` executable.

use std::process::ExitCode;

fn main() -> ExitCode {
    rvoy_server::main_entry()
}
