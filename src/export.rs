//! `latchkey export customers`: every customer, streamed page by page as CSV or JSON Lines with
//! the import's columns, so a store can leave as easily as it came. Password hashes only when
//! asked for (`--with-password-hashes`): the file is then as sensitive as a database dump.

use std::io::Write;

use anyhow::Context;
use domain::stored_hash::HashFormat;
use persistence::Stores;

use crate::{config::Config, import::Format, prepare_database};

const PAGE: u64 = 5_000;

const COLUMNS: [&str; 8] = [
    "email",
    "firstname",
    "lastname",
    "locale",
    "created_at",
    "password_hash",
    "hash_format",
    "external_id",
];

enum Sink {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Jsonl(std::io::BufWriter<Box<dyn Write>>),
}

/// Writes every customer to `out`; returns how many.
pub async fn run(
    config: &Config,
    format: Format,
    with_hashes: bool,
    raw: bool,
    out: Box<dyn Write>,
) -> anyhow::Result<u64> {
    let (db, _) = prepare_database(config).await?;
    let store = Stores::new(db).imports;
    let mut sink = match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(COLUMNS)?;
            Sink::Csv(Box::new(w))
        }
        Format::Jsonl => Sink::Jsonl(std::io::BufWriter::new(out)),
    };
    let mut after = None;
    let mut written = 0u64;
    loop {
        let page = store.export_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for c in &page {
            let hash = if with_hashes {
                c.password_hash.as_str()
            } else {
                ""
            };
            let format_label = HashFormat::detect(hash).map_or("", HashFormat::as_str);
            let created = c.created_at.to_rfc3339();
            let fields = [
                c.email.as_str(),
                c.firstname.as_str(),
                c.lastname.as_str(),
                c.locale.as_str(),
                created.as_str(),
                hash,
                format_label,
                c.external_id.as_deref().unwrap_or(""),
            ];
            match &mut sink {
                // A name like `=HYPERLINK(…)` must not run when the file is opened in a
                // spreadsheet: such cells start with `'` (the import takes it off), unless
                // `--raw`.
                Sink::Csv(w) if raw => w.write_record(fields)?,
                Sink::Csv(w) => {
                    let cells = fields.map(crate::files::neutralise_cell);
                    w.write_record(cells.iter().map(|c| c.as_bytes()))?;
                }
                Sink::Jsonl(w) => {
                    // Empty fields are left out, as the import reads them.
                    let object: serde_json::Map<String, serde_json::Value> = COLUMNS
                        .iter()
                        .zip(fields)
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v)))
                        .collect();
                    serde_json::to_writer(&mut *w, &object)?;
                    w.write_all(b"\n")?;
                }
            }
            written += 1;
        }
    }
    match sink {
        Sink::Csv(mut w) => w.flush(),
        Sink::Jsonl(mut w) => w.flush(),
    }
    .context("writing the export")?;
    Ok(written)
}
