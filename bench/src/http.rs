//! `bench http` (being written).

use crate::error::Result;
use crate::Ctx;

/// Runs the subcommand.
pub fn run(_ctx: &Ctx) -> Result<()> {
    Ok(())
}
