//! `bench conns` (being written).

use crate::error::Result;
use crate::Ctx;

/// Arguments of the hidden client subcommand.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {}

/// Runs the subcommand.
pub fn run(_ctx: &Ctx) -> Result<()> {
    Ok(())
}

/// The client process.
pub fn client(_args: &ClientArgs) -> Result<()> {
    Ok(())
}
