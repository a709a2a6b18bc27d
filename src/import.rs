//! `latchkey import customers FILE`: a store's customers, with their existing password hashes,
//! streamed from CSV (header row) or JSON Lines in bounded memory. Rows are checked by
//! `domain::import`, staged and written by `persistence` (PostgreSQL `COPY`), never hashed.

use std::{
    fs::File,
    io::{BufRead, BufReader, IsTerminal, Read, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context;
use domain::{
    admin::{AuditAction, NewAudit},
    import::{ImportCounts, ImportedCustomer, OnConflict, RawRow, Reject, validate},
};
use persistence::Stores;

use crate::{config::Config, hashing::work_limits, prepare_database};

/// Rows staged per round trip.
const BATCH: usize = 5_000;
/// Without a terminal, a progress line every this many rows.
const PROGRESS_EVERY: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The format a file name says (`.csv`, `.jsonl`, `.ndjson`).
    pub fn of_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Self::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Some(Self::Jsonl)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// A path, or `-` for standard input.
    pub file: String,
    pub format: Option<Format>,
    pub on_conflict: OnConflict,
    pub dry_run: bool,
    pub rejects: Option<PathBuf>,
    /// PostgreSQL's writing connections.
    pub writers: usize,
}

/// The end of an import, as printed.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counts: ImportCounts,
    pub seconds: f64,
    pub rejects_file: Option<PathBuf>,
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The reject file, created at the first rejected row: `line,reason,message` (CSV).
struct Rejects {
    path: PathBuf,
    out: Option<csv::Writer<File>>,
    count: u64,
}

impl Rejects {
    fn write(&mut self, line: u64, reject: &Reject) -> anyhow::Result<()> {
        if self.out.is_none() {
            // It names customers: 0600, and never through a link left in its place (a
            // reject file from an earlier run would be mistaken for this one's: replaced).
            let file = crate::files::create_private(&self.path, true)
                .with_context(|| format!("creating {}", self.path.display()))?;
            let mut w = csv::Writer::from_writer(file);
            w.write_record(["line", "reason", "message"])?;
            self.out = Some(w);
        }
        if let Some(w) = self.out.as_mut() {
            w.write_record([line.to_string(), reject.code().into(), reject.message()])?;
        }
        self.count += 1;
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<Option<PathBuf>> {
        match self.out.take() {
            Some(mut w) => {
                w.flush()?;
                Ok(Some(self.path.clone()))
            }
            None => Ok(None),
        }
    }
}

/// One row of the file, or why it could not be read.
type Read1 = (u64, Result<RawRow, Reject>);
/// One row checked: ready to stage, or rejected.
type Checked = (u64, Result<ImportedCustomer, Reject>);

/// Streams the rows of `input`: never more than one row in memory at a time.
fn rows(
    format: Format,
    input: Box<dyn Read + Send>,
) -> anyhow::Result<Box<dyn Iterator<Item = Read1> + Send>> {
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
            let headers = reader
                .byte_headers()
                .context("reading the header row")?
                .clone();
            let headers = csv::StringRecord::from_byte_record(headers)
                .map_err(|_| anyhow::anyhow!("the header row is not UTF-8"))?;
            let headers = csv::StringRecord::from_iter(
                headers
                    .iter()
                    .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()),
            );
            anyhow::ensure!(
                headers.iter().any(|h| h == "email"),
                "the header row has no `email` column"
            );
            let mut records = reader.into_byte_records();
            Ok(Box::new(std::iter::from_fn(move || {
                let record = records.next()?;
                Some(match record {
                    Err(e) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        (line, Err(Reject::Unreadable(e.to_string())))
                    }
                    Ok(r) => {
                        let line = r.position().map_or(0, csv::Position::line);
                        match csv::StringRecord::from_byte_record(r) {
                            Err(_) => (line, Err(Reject::InvalidUtf8)),
                            Ok(r) => {
                                // Cells an export neutralised for spreadsheets come back as
                                // they were.
                                let r: csv::StringRecord =
                                    r.iter().map(crate::files::restore_cell).collect();
                                (
                                    line,
                                    r.deserialize::<RawRow>(Some(&headers))
                                        .map_err(|e| Reject::Unreadable(e.to_string())),
                                )
                            }
                        }
                    }
                })
            })))
        }
        Format::Jsonl => {
            let mut reader = BufReader::new(input);
            let mut line = 0u64;
            let mut buf = Vec::new();
            Ok(Box::new(std::iter::from_fn(move || {
                loop {
                    buf.clear();
                    line += 1;
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) => return None,
                        Err(e) => return Some((line, Err(Reject::Unreadable(e.to_string())))),
                        Ok(_) => {}
                    }
                    let Ok(text) = std::str::from_utf8(&buf) else {
                        return Some((line, Err(Reject::InvalidUtf8)));
                    };
                    if text.trim().is_empty() {
                        continue;
                    }
                    return Some((line, json_row(text)));
                }
            })))
        }
    }
}

/// A JSON object to a row: strings as they are, numbers as their text (ids often are numbers).
fn json_row(text: &str) -> Result<RawRow, Reject> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Reject::Unreadable(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(Reject::Unreadable("not a JSON object".into()));
    };
    let field = |name: &str| match map.get(name) {
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => Err(Reject::Unreadable(format!("{name}: expected a string"))),
    };
    Ok(RawRow {
        email: field("email")?,
        firstname: field("firstname")?,
        lastname: field("lastname")?,
        locale: field("locale")?,
        created_at: field("created_at")?,
        password_hash: field("password_hash")?,
        hash_format: field("hash_format")?,
        external_id: field("external_id")?,
    })
}

pub async fn run(config: &Config, opts: Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let format = opts
        .format
        .or_else(|| Format::of_path(&opts.file))
        .context(
            "cannot tell the format from the file name: pass --format csv or --format jsonl",
        )?;
    let read = Arc::new(AtomicU64::new(0));
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if opts.file == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = File::open(&opts.file).with_context(|| format!("opening {}", opts.file))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let input = Box::new(Counting {
        inner: input,
        read: read.clone(),
    });
    let rejects_path = opts.rejects.clone().unwrap_or_else(|| {
        if opts.file == "-" {
            PathBuf::from("import-rejects.csv")
        } else {
            PathBuf::from(format!("{}.rejects.csv", opts.file))
        }
    });
    // A reject file from an earlier run would be mistaken for this one's.
    if std::fs::symlink_metadata(&rejects_path).is_ok() {
        std::fs::remove_file(&rejects_path)
            .with_context(|| format!("removing the old {}", rejects_path.display()))?;
    }
    let mut rejects = Rejects {
        path: rejects_path,
        out: None,
        count: 0,
    };

    let (db, _) = prepare_database(config).await?;
    let store = Stores::new(db).imports;
    let now = chrono::Utc::now();
    let mut session = store.begin_import(now, opts.writers).await?;
    let limits = work_limits();

    let progress = progress_bar(size);
    let mut batch: Vec<ImportedCustomer> = Vec::with_capacity(BATCH);
    let mut seen = 0u64;
    // Reading and checking are synchronous; they run on a blocking thread that hands batches
    // over a bounded channel, so memory stays at a few batches whatever the file's size.
    // Checking runs on that thread too, beside the staging of the previous batch.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Checked>>(4);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut chunk = Vec::with_capacity(BATCH);
        for (line, raw) in rows(format, input)? {
            chunk.push((line, raw.and_then(|raw| validate(raw, line, &limits))));
            if chunk.len() == BATCH {
                if tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                    return Ok(());
                }
                chunk.reserve(BATCH);
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        Ok(())
    });
    while let Some(chunk) = rx.recv().await {
        for (line, checked) in chunk {
            seen += 1;
            match checked {
                Ok(row) => batch.push(row),
                Err(reject) => rejects.write(line, &reject)?,
            }
        }
        if batch.len() >= BATCH {
            session
                .stage(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .await?;
        }
        report(&progress, seen, read.load(Ordering::Relaxed));
    }
    reader.await.context("the file reader stopped")??;
    session.stage(batch).await?;
    let file_rejects = rejects.count;
    if let Some(p) = &progress {
        p.set_message("writing");
    }
    let audit = NewAudit::by_operator(crate::os_actor(), AuditAction::ImportCustomers, now);
    let outcome = session
        .finish(opts.on_conflict, opts.dry_run, file_rejects, audit)
        .await?;
    if !opts.dry_run {
        if let Some(p) = &progress {
            p.set_message("analyzing");
        }
        store.analyze_customers().await?;
    }
    let mut sorted = outcome.rejects;
    sorted.sort_by_key(|(line, _)| *line);
    for (line, reject) in &sorted {
        rejects.write(*line, reject)?;
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let counts = ImportCounts {
        rejected: rejects.count,
        ..outcome.counts
    };
    Ok(Summary {
        counts,
        seconds: started.elapsed().as_secs_f64(),
        rejects_file: rejects.close()?,
    })
}

fn progress_bar(size: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match size {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    Some(bar)
}

fn report(progress: &Option<indicatif::ProgressBar>, rows: u64, bytes: u64) {
    match progress {
        Some(bar) => {
            bar.set_position(bytes);
            bar.set_message(format!("{rows} rows"));
        }
        None if rows % PROGRESS_EVERY < BATCH as u64 && rows >= PROGRESS_EVERY => {
            let _ = writeln!(std::io::stderr(), "import: {rows} rows read");
        }
        None => {}
    }
}

impl Summary {
    pub fn print(&self, dry_run: bool) {
        let c = &self.counts;
        let rows = c.imported + c.updated + c.skipped + c.rejected;
        println!(
            "{}imported {}, updated {}, skipped {}, rejected {} in {:.1} s ({:.0} rows/s)",
            if dry_run {
                "dry run (nothing written): "
            } else {
                ""
            },
            c.imported,
            c.updated,
            c.skipped,
            c.rejected,
            self.seconds,
            rows as f64 / self.seconds.max(1e-9),
        );
        if let Some(p) = &self.rejects_file {
            println!("rejected rows, with their line and reason: {}", p.display());
        }
    }
}
