//! The `bench http` report: one table (every server, with each of our variants'
//! ratios against every other server) and two ratio charts.

use super::{Measure, CASES};
use crate::error::Result;
use crate::report::{Chart, Series, Table};
use crate::stats::{self, Summary};

/// Prints the table and writes the CSV and the two ratio charts. The first `ours`
/// names are our variants (httpd and httpd inline), the rest the anchors.
pub(super) fn publish(
    report: &mut crate::report::Report,
    names: &[String],
    ours: usize,
    results: &[Vec<Vec<Measure>>],
) -> Result<()> {
    let mut columns: Vec<String> =
        ["case", "server", "req/s", "p50 ms", "p99 ms", "MiB/s", "errors", "CPU µs/req"]
            .map(String::from)
            .to_vec();
    for name in &names[..ours] {
        columns.push(format!("req/s {name}/this"));
        columns.push(format!("CPU/req {name}/this"));
    }
    let headers: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut table = Table::new(
        "http",
        "bench http: median (min–max) over rounds; ratios are ours/other per round, for each of our variants (req/s: higher is better for us, CPU/req: lower is better for us)",
        &headers,
    );
    // One series per (our variant, anchor) pair.
    let pairs: Vec<(usize, usize)> =
        (0..ours).flat_map(|o| (ours..names.len()).map(move |a| (o, a))).collect();
    let series = |what: &str| -> Vec<Series> {
        pairs
            .iter()
            .map(|&(o, a)| Series { name: format!("{what} {}/{}", names[o], names[a]), values: Vec::new() })
            .collect()
    };
    let (mut rps_series, mut cpu_series) = (series("req/s"), series("CPU/req"));
    for (case, per_server) in CASES.iter().zip(results) {
        let pick = |k: usize, f: fn(&Measure) -> f64| per_server[k].iter().map(f).collect::<Vec<f64>>();
        let rps_ratio = |o: usize, k: usize| Summary::of_ratios(&pick(o, |m| m.rps), &pick(k, |m| m.rps));
        let cpu_ratio = |o: usize, k: usize| {
            Summary::of_ratios(&pick(o, |m| m.cpu_us_per_req), &pick(k, |m| m.cpu_us_per_req))
        };
        for (k, name) in names.iter().enumerate() {
            if per_server[k].is_empty() {
                continue;
            }
            let s = |f: fn(&Measure) -> f64| Summary::of(&pick(k, f));
            let mut row = vec![
                case.label.replace('\n', " "),
                name.clone(),
                stats::show(s(|m| m.rps), 0),
                stats::show(s(|m| m.p50_ms), 2),
                stats::show(s(|m| m.p99_ms), 2),
                stats::show(s(|m| m.bytes_per_s / (1024.0 * 1024.0)), 1),
                stats::show(s(|m| m.errors), 0),
                stats::show(s(|m| m.cpu_us_per_req), 2),
            ];
            for o in 0..ours {
                let cell = |r: Option<Summary>| if k == o { "–".to_string() } else { stats::show(r, 2) };
                row.push(cell(rps_ratio(o, k)));
                row.push(cell(cpu_ratio(o, k)));
            }
            table.push(row);
        }
        for (i, &(o, a)) in pairs.iter().enumerate() {
            let present = !per_server[a].is_empty();
            rps_series[i].values.push(present.then(|| rps_ratio(o, a)).flatten());
            cpu_series[i].values.push(present.then(|| cpu_ratio(o, a)).flatten());
        }
    }
    report.table(&table)?;
    let categories: Vec<String> = CASES.iter().map(|c| c.label.to_string()).collect();
    report.chart(&Chart {
        name: "http_rps_ratio".into(),
        title: "httpd (default and inline) requests/s relative to each anchor (median, min–max over rounds; > 1: ours faster)"
            .into(),
        y_label: "req/s ratio ours / anchor".into(),
        categories: categories.clone(),
        series: rps_series,
        reference: Some(1.0),
    })?;
    report.chart(&Chart {
        name: "http_cpu_ratio".into(),
        title:
            "httpd (default and inline) server CPU per request relative to each anchor (< 1: ours cheaper)"
                .into(),
        y_label: "CPU/request ratio ours / anchor".into(),
        categories,
        series: cpu_series,
        reference: Some(1.0),
    })
}
