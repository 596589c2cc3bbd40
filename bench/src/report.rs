//! What a run leaves behind: a Markdown table on stdout, the same rows as CSV, a bar
//! chart as SVG, and (for full runs) the section of `BENCHMARKS.md` between its markers.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Context, Error, Result};
use crate::stats::Summary;

/// Rows of text under named columns; the figures are formatted by the subcommand.
#[derive(Debug, Clone)]
pub struct Table {
    /// File stem under the results folder (`http` → `http.csv`).
    pub name: String,
    /// One line saying what was measured.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Cells, one `Vec` per row, as many as `columns`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(name: &str, title: &str, columns: &[&str]) -> Table {
        Table {
            name: name.to_string(),
            title: title.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<String>) {
        assert_eq!(row.len(), self.columns.len(), "a row has one cell per column of {}", self.name);
        self.rows.push(row);
    }

    /// The table as GitHub Markdown, title first.
    pub fn markdown(&self) -> String {
        let mut out = format!("**{}**\n\n", self.title);
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.columns));
        out.push_str(&line(&self.columns.iter().map(|_| "---".to_string()).collect::<Vec<_>>()));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// One series of bars in a chart: a median per category with its min–max whisker.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// One value per category; `None` leaves a gap.
    pub values: Vec<Option<Summary>>,
}

/// A grouped bar chart: categories along x, one bar per series in each.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem of the SVG.
    pub name: String,
    /// Caption.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Category labels along x.
    pub categories: Vec<String>,
    /// The bars.
    pub series: Vec<Series>,
    /// A dashed horizontal line (1.0 on ratio charts: parity with the anchor).
    pub reference: Option<f64>,
}

/// Where results go and what a run is called; one per subcommand run.
#[derive(Debug)]
pub struct Report {
    dir: PathBuf,
    /// Full runs also rewrite their section of `BENCHMARKS.md`.
    benchmarks_md: Option<PathBuf>,
    name: String,
    markdown: String,
}

impl Report {
    /// Results of subcommand `name` go to `dir`; `benchmarks_md` is the file whose
    /// marked section a full run replaces (`None` for `--quick`).
    pub fn new(dir: &Path, name: &str, benchmarks_md: Option<PathBuf>) -> Result<Report> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        Ok(Report { dir: dir.to_path_buf(), benchmarks_md, name: name.to_string(), markdown: String::new() })
    }

    /// A paragraph of context (machine, configuration) printed and kept in the report.
    pub fn note(&mut self, text: &str) {
        println!("{text}\n");
        self.markdown.push_str(text);
        self.markdown.push_str("\n\n");
    }

    /// Prints a table and writes it as `<dir>/<table.name>.csv`.
    pub fn table(&mut self, table: &Table) -> Result<()> {
        let md = table.markdown();
        println!("{md}");
        self.markdown.push_str(&md);
        self.markdown.push('\n');
        let path = self.dir.join(format!("{}.csv", table.name));
        let err = |e: csv::Error| Error::Tool(format!("writing {}: {e}", path.display()));
        let mut w = csv::Writer::from_path(&path).map_err(err)?;
        w.write_record(&table.columns).map_err(err)?;
        for row in &table.rows {
            w.write_record(row).map_err(err)?;
        }
        w.flush().context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }

    /// Draws `chart` as `<dir>/<chart.name>.svg` and links it from the report.
    pub fn chart(&mut self, chart: &Chart) -> Result<()> {
        let path = self.dir.join(format!("{}.svg", chart.name));
        draw(&path, chart).map_err(|message| Error::Plot { file: path.display().to_string(), message })?;
        println!("wrote {}\n", path.display());
        let _ = write!(self.markdown, "![{}](bench/results/{}.svg)\n\n", chart.title, chart.name);
        Ok(())
    }

    /// Writes `<dir>/<name>.md` and, for a full run, replaces the section of
    /// `BENCHMARKS.md` between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, so the
    /// published figures are exactly the printed ones.
    pub fn finish(self) -> Result<()> {
        let path = self.dir.join(format!("{}.md", self.name));
        fs::write(&path, &self.markdown).context(|| format!("writing {}", path.display()))?;
        let Some(md) = self.benchmarks_md else { return Ok(()) };
        let text = fs::read_to_string(&md).context(|| format!("reading {}", md.display()))?;
        let (open, close) =
            (format!("<!-- bench:{} -->", self.name), format!("<!-- /bench:{} -->", self.name));
        let (Some(a), Some(b)) = (text.find(&open), text.find(&close)) else {
            return Err(Error::Tool(format!("{} has no {open} … {close} section", md.display())));
        };
        let updated = format!("{}{open}\n{}{}", &text[..a], self.markdown, &text[b..]);
        fs::write(&md, updated).context(|| format!("writing {}", md.display()))?;
        println!("updated {}", md.display());
        Ok(())
    }
}

/// A progress bar on stderr over `len` steps (hidden when stderr is not a terminal).
pub fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} eta {eta} {msg}")
        .expect("the progress template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw(path: &Path, chart: &Chart) -> std::result::Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let top = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten().map(|v| v.max))
        .chain(chart.reference)
        .fold(0.0f64, f64::max);
    let y_max = if top > 0.0 { top * 1.12 } else { 1.0 };
    let n = chart.categories.len().max(1);
    let mut c = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
        .map_err(|x| e(&x))?;
    c.configure_mesh().disable_x_mesh().x_labels(0).y_desc(&chart.y_label).draw().map_err(|x| e(&x))?;
    let slots = chart.series.len().max(1) as f64;
    let width = 0.8 / slots;
    for (k, series) in chart.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let left = |i: usize| i as f64 + 0.1 + k as f64 * width;
        let bars = series.values.iter().enumerate().filter_map(|(i, v)| {
            v.map(|v| Rectangle::new([(left(i), 0.0), (left(i) + width * 0.92, v.median)], color.filled()))
        });
        c.draw_series(bars)
            .map_err(|x| e(&x))?
            .label(&series.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let whiskers = series.values.iter().enumerate().filter_map(|(i, v)| {
            let mid = left(i) + width * 0.46;
            v.filter(|v| v.max > v.min).map(|v| PathElement::new(vec![(mid, v.min), (mid, v.max)], BLACK))
        });
        c.draw_series(whiskers).map_err(|x| e(&x))?;
    }
    if let Some(r) = chart.reference {
        c.draw_series(DashedLineSeries::new(vec![(0.0, r), (n as f64, r)], 6, 4, BLACK.into()))
            .map_err(|x| e(&x))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    let style = TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, label) in chart.categories.iter().enumerate() {
        let (x, y) = c.backend_coord(&(i as f64 + 0.5, 0.0));
        for (line, text) in label.split('\n').enumerate() {
            root.draw(&Text::new(text.to_string(), (x, y + 8 + 16 * line as i32), style.clone()))
                .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))
}
