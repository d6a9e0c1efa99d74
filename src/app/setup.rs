//! `autoharness init` and `autoharness doctor`: `flow::setup` does the work, `report::setup`
//! renders it.

use serde_json::json;

use super::cli::InitArgs;
use crate::config::Settings;
use crate::exit::{self, ExitCode};
use crate::report::Output;
use crate::report::setup as render;

pub fn init(out: &Output, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let r = crate::flow::setup::init(&args.dir, args.name.clone())?;
    if out.json {
        out.print_json(&json!({"schema": crate::schema::INIT, "result": r}))?;
    } else {
        out.print(&render::init(out, &r));
    }
    Ok(exit::SUCCESS)
}

pub fn doctor(settings: &Settings, out: &Output) -> anyhow::Result<ExitCode> {
    let report = crate::flow::setup::doctor(settings)?;
    if out.json {
        out.print_json(&report)?;
    } else {
        out.print(&render::doctor(out, &report));
    }
    Ok(if report.problems.is_empty() { exit::SUCCESS } else { exit::FAILURE })
}
